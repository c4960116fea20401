-- +goose Up
-- The migration's own bookkeeping. It lives in the keymigrate schema; the
-- application's photos table is never altered beyond its key columns and status.

-- One row per producer run: its checkpoint makes a restart resume, not resend.
CREATE TABLE keymigrate.runs (
    run_id      text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- id of the last photo whose message was sent and recorded; the next
    -- invocation of the same run scans from here.
    checkpoint  text,
    found       bigint NOT NULL DEFAULT 0,
    enqueued    bigint NOT NULL DEFAULT 0,
    skipped     bigint NOT NULL DEFAULT 0,
    ownerless   bigint NOT NULL DEFAULT 0
);

-- One row per photo the migration has touched.
CREATE TABLE keymigrate.photo_moves (
    photo_id          text PRIMARY KEY,
    run_id            text,
    state             text NOT NULL CHECK (state IN
        ('enqueued', 'in_progress', 'migrated', 'archived', 'failed', 'rolled_back', 'cleaned')),
    owner_id          text,
    job_id            text,
    attempts          integer NOT NULL DEFAULT 0,
    last_reason       text,
    last_error        text,
    -- the row as it was before the swap (or the archive): rollback's input
    old_original_key  text,
    old_processed_key text,
    old_thumbnail_key text,
    old_status        text,
    new_original_key  text,
    new_processed_key text,
    new_thumbnail_key text,
    enqueued_at       timestamptz,
    started_at        timestamptz,
    swapped_at        timestamptz,
    archived_at       timestamptz,
    failed_at         timestamptz,
    rolled_back_at    timestamptz,
    cleaned_at        timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX photo_moves_state_idx ON keymigrate.photo_moves (state);
CREATE INDEX photo_moves_updated_idx ON keymigrate.photo_moves (updated_at);

-- One row per object copied to a user-scoped key. The new key identifies it:
-- it embeds the user and the photo, so no two photos can share one.
CREATE TABLE keymigrate.object_moves (
    new_key            text PRIMARY KEY,
    photo_id           text NOT NULL,
    kind               text NOT NULL,
    old_key            text NOT NULL,
    size               bigint NOT NULL,
    source_etag        text,
    etag               text,
    checksum_algorithm text,
    checksum           text,
    verify_method      text,
    content_type       text,
    copied_at          timestamptz,
    verified_at        timestamptz,
    -- set in the transaction that made the photo's row point at new_key (or,
    -- for animations and metadata, that recorded the move as done): cleanup
    -- only ever considers committed moves.
    committed_at       timestamptz,
    deleted_at         timestamptz
);
CREATE INDEX object_moves_photo_idx ON keymigrate.object_moves (photo_id);

-- Every failure, permanent or transient, as an audit trail and as the reason
-- behind each message in the dead-letter queue.
CREATE TABLE keymigrate.failures (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    photo_id      text,
    run_id        text,
    message_id    text,
    reason        text NOT NULL,
    permanent     boolean NOT NULL,
    error         text NOT NULL,
    body          text,
    receive_count integer
);
CREATE INDEX failures_photo_idx ON keymigrate.failures (photo_id);
CREATE INDEX failures_message_idx ON keymigrate.failures (message_id);

-- +goose Down
DROP TABLE keymigrate.failures;
DROP TABLE keymigrate.object_moves;
DROP TABLE keymigrate.photo_moves;
DROP TABLE keymigrate.runs;
