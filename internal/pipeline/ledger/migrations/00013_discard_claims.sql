-- +goose Up
-- A discard of an uncommitted copy is claimed before its delete is sent and
-- settled after it answers (S1 in docs/soak-findings.md). discard_gen counts
-- the claims made on the move: a swap commits a move only if its gen is still
-- the one its attempt's intents recorded, so a discard claimed after those
-- intents (even one since settled and re-opened by a third attempt) makes it
-- re-plan. discarding_at is set while a claimed delete may be in flight (an
-- unsettled discard): intents, pins and copies leave such a move alone, and
-- only after a bound on the deleter's request may another attempt take the
-- claim over. discard_etag is the ETag that delete is conditional on.
-- A constant default and two nullable columns: adding them rewrites no row.
ALTER TABLE keymigrate.object_moves ADD COLUMN discard_gen bigint NOT NULL DEFAULT 0;
ALTER TABLE keymigrate.object_moves ADD COLUMN discarding_at timestamptz;
ALTER TABLE keymigrate.object_moves ADD COLUMN discard_etag text;

-- +goose Down
ALTER TABLE keymigrate.object_moves DROP COLUMN discard_etag;
ALTER TABLE keymigrate.object_moves DROP COLUMN discarding_at;
ALTER TABLE keymigrate.object_moves DROP COLUMN discard_gen;
