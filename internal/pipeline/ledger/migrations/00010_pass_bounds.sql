-- +goose Up
-- The key ranges of a pass split across machines (verify --shard i/n): fixed
-- by the first shard that joins the pass, from a sample of the tables, and
-- read by every other shard, so the shards' ranges are disjoint and cover
-- every key even when the tables change between the shards' starts. A reset
-- of the pass forgets them with its cursors.
CREATE TABLE keymigrate.pass_bounds (
    pass       text NOT NULL,
    scope      text NOT NULL,
    shards     integer NOT NULL,
    -- the pass's own description of its ranges, as JSON
    bounds     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pass, scope, shards)
);

-- +goose Down
DROP TABLE keymigrate.pass_bounds;
