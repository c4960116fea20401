-- +goose Up
-- What running beside a live application needs (issue 9): legacy objects are
-- shared between rows, the application writes and deletes under users/, photos
-- are deleted and re-owned while the fleet runs, and operators roll back.

-- The job a legacy object belongs to: cleanup and verify look up every row
-- that references or derives a job's objects.
ALTER TABLE keymigrate.object_moves ADD COLUMN job_id text;
UPDATE keymigrate.object_moves SET job_id = substring(old_key FROM '^[a-z]+/([A-Za-z0-9-]+)');
CREATE INDEX object_moves_job_idx ON keymigrate.object_moves (job_id);

-- The application wrote this user-scoped key itself (an edited metadata file,
-- a new animation) before keymigrate's copy landed, or over it before the
-- swap: keymigrate made no copy of its own there and never touches those
-- bytes; the row no longer needs the legacy object for this key.
ALTER TABLE keymigrate.object_moves ADD COLUMN superseded_at timestamptz;

-- Cleanup records its intent, with the legacy ETag it deletes under, before
-- deleting: a crash between the delete and its record leaves the ledger
-- truthful (the next pass finds the object gone and records it).
ALTER TABLE keymigrate.object_moves ADD COLUMN delete_intent_at timestamptz;
ALTER TABLE keymigrate.object_moves ADD COLUMN delete_etag text;
-- A copy keymigrate discarded because the photo was deleted, re-owned or
-- re-planned before its swap (never committed).
ALTER TABLE keymigrate.object_moves ADD COLUMN discarded_at timestamptz;
-- Anything S3 carries that the copy could not carry (an ACL that is not the
-- bucket owner's default, Object Lock retention, a legal hold): reported.
ALTER TABLE keymigrate.object_moves ADD COLUMN not_carried text;

CREATE INDEX object_moves_cleanup_idx ON keymigrate.object_moves (old_key)
  WHERE committed_at IS NOT NULL AND deleted_at IS NULL;

-- A photo the application deleted (its row is gone): its legacy objects are
-- cleaned after the grace period if no other row needs them.
ALTER TABLE keymigrate.photo_moves DROP CONSTRAINT photo_moves_state_check;
ALTER TABLE keymigrate.photo_moves ADD CONSTRAINT photo_moves_state_check CHECK (state IN
  ('enqueued', 'in_progress', 'migrated', 'archived', 'failed', 'rolled_back', 'cleaned', 'deleted', 'purged'));
-- An archived photo whose legacy objects `archived purge` deleted after its
-- retention period: the application's row is the application's to delete.
ALTER TABLE keymigrate.photo_moves ADD COLUMN purged_at timestamptz;
-- Every legacy object `archived purge` deleted (or is about to: intent first).
CREATE TABLE keymigrate.purges (
    old_key    text PRIMARY KEY,
    photo_id   text NOT NULL,
    etag       text NOT NULL,
    size       bigint NOT NULL,
    intent_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
ALTER TABLE keymigrate.photo_moves ADD COLUMN deleted_at timestamptz;
-- The worker holding the photo while it is in_progress: a photo in progress
-- whose worker stopped beating is not in hand, and the sweeper may re-enqueue it.
ALTER TABLE keymigrate.photo_moves ADD COLUMN worker_id text;
-- How often the sweeper re-enqueued this photo because its message was lost.
ALTER TABLE keymigrate.photo_moves ADD COLUMN rescued integer NOT NULL DEFAULT 0;
CREATE INDEX photo_moves_open_idx ON keymigrate.photo_moves (updated_at)
  WHERE state IN ('enqueued', 'in_progress');

-- What the fleet learned about the S3 server once, so that not every worker
-- start writes probe objects (a worker killed mid-probe would leave them).
ALTER TABLE keymigrate.control ADD COLUMN s3_bucket text;
ALTER TABLE keymigrate.control ADD COLUMN s3_conditional_copy boolean;
ALTER TABLE keymigrate.control ADD COLUMN s3_conditional_delete boolean;
ALTER TABLE keymigrate.control ADD COLUMN s3_conditional_batch_delete boolean;
ALTER TABLE keymigrate.control ADD COLUMN s3_acls boolean;
ALTER TABLE keymigrate.control ADD COLUMN s3_copy_keeps_headers boolean;
ALTER TABLE keymigrate.control ADD COLUMN s3_probed_at timestamptz;
-- When the sweeper last found the queue empty while the ledger had open photos.
ALTER TABLE keymigrate.control ADD COLUMN sweep_empty_since timestamptz;

-- Why a worker takes no message right now (a dependency it waits for).
ALTER TABLE keymigrate.workers ADD COLUMN waiting_for text;

-- +goose Down
ALTER TABLE keymigrate.workers DROP COLUMN waiting_for;
ALTER TABLE keymigrate.control DROP COLUMN sweep_empty_since;
ALTER TABLE keymigrate.control DROP COLUMN s3_probed_at;
ALTER TABLE keymigrate.control DROP COLUMN s3_copy_keeps_headers;
ALTER TABLE keymigrate.control DROP COLUMN s3_acls;
ALTER TABLE keymigrate.control DROP COLUMN s3_conditional_batch_delete;
ALTER TABLE keymigrate.control DROP COLUMN s3_conditional_delete;
ALTER TABLE keymigrate.control DROP COLUMN s3_conditional_copy;
ALTER TABLE keymigrate.control DROP COLUMN s3_bucket;
DROP INDEX keymigrate.photo_moves_open_idx;
ALTER TABLE keymigrate.photo_moves DROP COLUMN rescued;
DROP TABLE keymigrate.purges;
ALTER TABLE keymigrate.photo_moves DROP COLUMN purged_at;
ALTER TABLE keymigrate.photo_moves DROP COLUMN worker_id;
ALTER TABLE keymigrate.photo_moves DROP COLUMN deleted_at;
ALTER TABLE keymigrate.photo_moves DROP CONSTRAINT photo_moves_state_check;
ALTER TABLE keymigrate.photo_moves ADD CONSTRAINT photo_moves_state_check CHECK (state IN
  ('enqueued', 'in_progress', 'migrated', 'archived', 'failed', 'rolled_back', 'cleaned'));
DROP INDEX keymigrate.object_moves_cleanup_idx;
ALTER TABLE keymigrate.object_moves DROP COLUMN not_carried;
ALTER TABLE keymigrate.object_moves DROP COLUMN discarded_at;
ALTER TABLE keymigrate.object_moves DROP COLUMN delete_etag;
ALTER TABLE keymigrate.object_moves DROP COLUMN delete_intent_at;
ALTER TABLE keymigrate.object_moves DROP COLUMN superseded_at;
DROP INDEX keymigrate.object_moves_job_idx;
ALTER TABLE keymigrate.object_moves DROP COLUMN job_id;
