-- +goose Up
-- The source versions a copy to new_key was pinned to, recorded before the
-- copy is sent (F12 in docs/soak-findings.md). A copy whose response is lost
-- leaves no ETag of its write; if its source is then rewritten in place, the
-- next attempt finds bytes the ledger does not know and that differ from the
-- source. A single-part copy's ETag is its source's ETag (the MD5 of the
-- bytes it pinned with x-amz-copy-source-if-match), so bytes at new_key whose
-- ETag and size are one of these pairs are keymigrate's own copy of an older
-- source version, copied again (conditionally on that ETag) rather than
-- taken for the application's. pinned_etags[i] goes with pinned_sizes[i];
-- the last eight are kept; both are cleared when the move commits (the
-- recorded etag then names the copy) and when a discarded intent is reused.
-- Nullable, no default: adding them rewrites no row.
ALTER TABLE keymigrate.object_moves ADD COLUMN pinned_etags text[];
ALTER TABLE keymigrate.object_moves ADD COLUMN pinned_sizes bigint[];

-- +goose Down
ALTER TABLE keymigrate.object_moves DROP COLUMN pinned_sizes;
ALTER TABLE keymigrate.object_moves DROP COLUMN pinned_etags;
