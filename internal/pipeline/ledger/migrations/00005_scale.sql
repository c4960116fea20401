-- +goose Up
-- A ledger and a producer for a billion photos (issue 12).

-- Sharded producer runs: `producer --shard i/n` runs n producers over disjoint
-- ranges of photos.id, each with its own checkpoint. shards is 0 for a run
-- that is not sharded (its checkpoint is runs.checkpoint).
ALTER TABLE keymigrate.runs ADD COLUMN shards integer NOT NULL DEFAULT 0;
CREATE TABLE keymigrate.run_shards (
    run_id      text NOT NULL REFERENCES keymigrate.runs (run_id),
    shard       integer NOT NULL,
    -- photos.id as text: lower inclusive, upper exclusive, NULL unbounded
    lower       text,
    upper       text,
    checkpoint  text,
    found       bigint NOT NULL DEFAULT 0,
    enqueued    bigint NOT NULL DEFAULT 0,
    skipped     bigint NOT NULL DEFAULT 0,
    ownerless   bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (run_id, shard)
);

-- A ledger that fits at a billion photos (docs/performance-database.md).
--
-- Indexes no query uses: status counts states and rates by full scans, the
-- sweeper and the open-photo counts use photo_moves_open_idx, and no query
-- filters on photo_moves.updated_at or swapped_at alone. object_moves'
-- lookups by legacy key go through job_id (every legacy key names its job),
-- which has its own index.
DROP INDEX keymigrate.photo_moves_state_idx;
DROP INDEX keymigrate.photo_moves_updated_idx;
DROP INDEX keymigrate.photo_moves_swapped_idx;
DROP INDEX keymigrate.object_moves_old_key_idx;
-- The few failed photos (redrive), and cleanup's intents not yet settled.
CREATE INDEX photo_moves_failed_idx ON keymigrate.photo_moves (photo_id) WHERE state = 'failed';
CREATE INDEX object_moves_intent_idx ON keymigrate.object_moves (old_key) WHERE delete_intent_at IS NOT NULL AND deleted_at IS NULL;
-- Lookups by legacy key now find rows by job_id: make it the key's job on the
-- rows an older version recorded with the photo's job (planned copies only).
UPDATE keymigrate.object_moves SET job_id = substring(old_key FROM '^[a-z]+/([A-Za-z0-9-]+)')
 WHERE committed_at IS NULL AND job_id IS DISTINCT FROM substring(old_key FROM '^[a-z]+/([A-Za-z0-9-]+)');

-- The new keys of a swap are, but for rare re-swaps, those the key layout
-- derives from the old keys, the owner and the photo: new_derived says so, and
-- the three new_*_key columns stay NULL.
ALTER TABLE keymigrate.photo_moves ADD COLUMN new_derived boolean NOT NULL DEFAULT false;
-- Set by `migratectl ledger compact`: the photo's object moves were folded
-- into object_audit (it is cleaned and past the rollback window).
ALTER TABLE keymigrate.photo_moves ADD COLUMN compacted_at timestamptz;

-- The audit record of a compacted photo's object moves: one row per photo and
-- legacy job, the moves packed (JSON, deflated by keymigrate: ledger.AuditObject)
-- instead of one indexed row each. Verify finds the legacy keys cleanup
-- deleted by job, the report by photo.
CREATE TABLE keymigrate.object_audit (
    photo_id text NOT NULL,
    job_id   text NOT NULL,
    -- how many moves objects holds
    moves    smallint NOT NULL,
    objects  bytea NOT NULL,
    PRIMARY KEY (photo_id, job_id)
);
-- Already compressed: Postgres need not try again.
ALTER TABLE keymigrate.object_audit ALTER COLUMN objects SET STORAGE EXTERNAL;
CREATE INDEX object_audit_job_idx ON keymigrate.object_audit (job_id);

-- +goose Down
DROP TABLE keymigrate.object_audit;
ALTER TABLE keymigrate.photo_moves DROP COLUMN compacted_at;
ALTER TABLE keymigrate.photo_moves DROP COLUMN new_derived;
DROP INDEX keymigrate.object_moves_intent_idx;
DROP INDEX keymigrate.photo_moves_failed_idx;
CREATE INDEX object_moves_old_key_idx ON keymigrate.object_moves (old_key);
CREATE INDEX photo_moves_swapped_idx ON keymigrate.photo_moves (swapped_at) WHERE state = 'migrated';
CREATE INDEX photo_moves_updated_idx ON keymigrate.photo_moves (updated_at);
CREATE INDEX photo_moves_state_idx ON keymigrate.photo_moves (state);
DROP TABLE keymigrate.run_shards;
ALTER TABLE keymigrate.runs DROP COLUMN shards;
