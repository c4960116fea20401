-- +goose Up
-- An aborted run (issue 17 §4, `migratectl abort --run R`): no photo of it is
-- migrated after the abort commits. The abort marks the run's photos still
-- enqueued or in progress rolled back (workers drop their messages, swaps
-- re-check the ledger, the sweeper skips them), finishes the run so no
-- producer resumes it, and refuses any later recording of photos for it.
ALTER TABLE keymigrate.runs ADD COLUMN aborted_at timestamptz;
ALTER TABLE keymigrate.runs ADD COLUMN aborted_by text;

-- +goose Down
ALTER TABLE keymigrate.runs DROP COLUMN aborted_by;
ALTER TABLE keymigrate.runs DROP COLUMN aborted_at;
