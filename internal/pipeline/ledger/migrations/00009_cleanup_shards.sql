-- +goose Up
-- cleanup split across machines (issue 16 §2): `cleanup --shard i/n` walks the
-- legacy objects whose job hashes into the i-th of n equal ranges of a 32-bit
-- hash, in (hash, old_key) order. Sharding by the job, not by the key, keeps
-- every object of a job (uploaded/J, thumbnails/J, restored/J/…, meta/J,
-- animated/J/…) in one shard, so a page reads each job's rows once; hashing
-- balances the shards whatever the application's job ids look like.
-- job_hash is md5-based, so it is the same on every server and version.
-- +goose StatementBegin
CREATE FUNCTION keymigrate.job_hash(job text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ('x' || substr(md5(coalesce(job, '')), 1, 8))::bit(32)::integer $$;
-- +goose StatementEnd

-- cleanup's candidates (committed, not superseded, not deleted) in shard
-- order. (object_moves_cleanup_idx, by old_key, stays: other readers use it.)
CREATE INDEX object_moves_cleanup_shard_idx ON keymigrate.object_moves (keymigrate.job_hash(job_id), old_key)
    WHERE committed_at IS NOT NULL AND deleted_at IS NULL AND superseded_at IS NULL;

-- +goose Down
DROP INDEX keymigrate.object_moves_cleanup_shard_idx;
DROP FUNCTION keymigrate.job_hash(text);
