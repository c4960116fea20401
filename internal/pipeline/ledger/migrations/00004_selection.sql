-- +goose Up
-- Staged rollout and manual review (issue 11): a run records which photos it
-- selected, status/verify/report can be scoped to a run, and an operator's
-- assignment of an owner to an archived photo is kept for the audit.

-- producer: a pass of the producer over the photos table (resumable);
-- assign: one `migratectl archived assign` invocation.
ALTER TABLE keymigrate.runs ADD COLUMN kind text NOT NULL DEFAULT 'producer' CHECK (kind IN ('producer', 'assign'));
-- The subset the run enqueues (owners, list file hash and count, limit, sample
-- percent; or the assignments' source). NULL: every legacy photo.
ALTER TABLE keymigrate.runs ADD COLUMN selection jsonb;

-- status --run, verify --run and report --run walk one run's photos in id order.
CREATE INDEX photo_moves_run_idx ON keymigrate.photo_moves (run_id, photo_id);

-- One row per archived photo an operator gave an owner. The photos row is
-- un-archived (owner set, status restored) in the same transaction that
-- inserts this row; enqueued_at is set once its message was sent, so a run
-- interrupted in between sends it on the next invocation.
CREATE TABLE keymigrate.assignments (
    photo_id    text PRIMARY KEY,
    owner_id    text NOT NULL,
    run_id      text NOT NULL,
    -- photos.status before the worker archived it, put back by the assignment
    old_status  text,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    assigned_by text NOT NULL,
    -- where the decision came from: "--photo" or "FILE:LINE"
    source      text NOT NULL,
    enqueued_at timestamptz
);
CREATE INDEX assignments_run_idx ON keymigrate.assignments (run_id);

-- +goose Down
DROP TABLE keymigrate.assignments;
DROP INDEX keymigrate.photo_moves_run_idx;
ALTER TABLE keymigrate.runs DROP COLUMN selection;
ALTER TABLE keymigrate.runs DROP COLUMN kind;
