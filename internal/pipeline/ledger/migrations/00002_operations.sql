-- +goose Up
-- What operating the migration needs: a control record every worker reads
-- (pause, fleet rate), worker heartbeats (to split the rate), rollback's record
-- of deleted new copies, and the indexes verify and cleanup look things up by.

CREATE TABLE keymigrate.control (
    id         integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    paused     boolean NOT NULL DEFAULT false,
    -- photos per second for the whole fleet; NULL means no throttle
    rate_limit double precision CHECK (rate_limit IS NULL OR rate_limit > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text
);
INSERT INTO keymigrate.control (id) VALUES (1);

CREATE TABLE keymigrate.workers (
    worker_id  text PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    paused     boolean NOT NULL DEFAULT false,
    in_flight  integer NOT NULL DEFAULT 0
);

ALTER TABLE keymigrate.object_moves ADD COLUMN new_deleted_at timestamptz;
ALTER TABLE keymigrate.object_moves ADD COLUMN restored_at timestamptz;
CREATE INDEX object_moves_old_key_idx ON keymigrate.object_moves (old_key);
CREATE INDEX photo_moves_job_idx ON keymigrate.photo_moves (job_id);
-- set when a dead-lettered message was moved back to the main queue
ALTER TABLE keymigrate.failures ADD COLUMN redriven_at timestamptz;
CREATE INDEX failures_open_idx ON keymigrate.failures (reason) WHERE permanent AND redriven_at IS NULL;

CREATE INDEX photo_moves_swapped_idx ON keymigrate.photo_moves (swapped_at) WHERE state = 'migrated';

-- +goose Down
DROP INDEX keymigrate.failures_open_idx;
ALTER TABLE keymigrate.failures DROP COLUMN redriven_at;
DROP INDEX keymigrate.photo_moves_swapped_idx;
DROP INDEX keymigrate.photo_moves_job_idx;
DROP INDEX keymigrate.object_moves_old_key_idx;
ALTER TABLE keymigrate.object_moves DROP COLUMN restored_at;
ALTER TABLE keymigrate.object_moves DROP COLUMN new_deleted_at;
DROP TABLE keymigrate.workers;
DROP TABLE keymigrate.control;
