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

-- +goose Down
DROP TABLE keymigrate.run_shards;
ALTER TABLE keymigrate.runs DROP COLUMN shards;
