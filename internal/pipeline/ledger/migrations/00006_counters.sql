-- +goose Up
-- Status in constant time, and cursors for passes split across machines
-- (issue 16: every phase at a billion photos).

-- Counters of photo_moves by run, state and (for photos in progress) worker,
-- and of committed objects whose copy could not carry something. Triggers on
-- photo_moves and object_moves append one delta row per statement and group in
-- the transaction that changes the counted rows, so the counts are exact at
-- every commit; inserting is all a writer does (no counter row is locked, so
-- the fleet's transactions never queue behind one another). Folding moves the
-- deltas into counter_totals (CounterFold, run by the workers' background loop
-- and by status), so a snapshot reads a few hundred rows whatever the size of
-- the ledger.
CREATE TABLE keymigrate.counter_deltas (
    id        bigserial PRIMARY KEY,
    -- 'photo' (a photo_moves row), 'finished' (a photo that entered
    -- migrated, archived, cleaned or failed: for the rate, never totalled) or
    -- 'not_carried' (a committed object whose copy lacks what its source
    -- carried)
    name      text NOT NULL,
    run_id    text NOT NULL DEFAULT '',
    state     text NOT NULL DEFAULT '',
    -- the worker holding a photo in progress ('' in every other state)
    worker_id text NOT NULL DEFAULT '',
    delta     bigint NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE keymigrate.counter_totals (
    name      text NOT NULL,
    run_id    text NOT NULL,
    state     text NOT NULL,
    worker_id text NOT NULL,
    n         bigint NOT NULL,
    PRIMARY KEY (name, run_id, state, worker_id)
);
-- Photos that reached a final state (migrated, archived), by 10-second bucket:
-- the rate status shows. Buckets older than a day are dropped when folding.
CREATE TABLE keymigrate.progress_buckets (
    run_id text NOT NULL,
    bucket timestamptz NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (run_id, bucket)
);
-- When a photo last reached migrated, archived, cleaned or failed.
CREATE TABLE keymigrate.progress_last (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    at timestamptz
);
INSERT INTO keymigrate.progress_last (id, at) VALUES (1, NULL);

-- +goose StatementBegin
CREATE FUNCTION keymigrate.count_photo_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO keymigrate.counter_deltas (name, run_id, state, worker_id, delta)
        SELECT 'photo', coalesce(run_id, ''), state, CASE WHEN state = 'in_progress' THEN coalesce(worker_id, '') ELSE '' END, count(*)
          FROM new_rows GROUP BY 2, 3, 4
        UNION ALL
        SELECT 'finished', coalesce(run_id, ''), state, '', count(*)
          FROM new_rows WHERE state IN ('migrated', 'archived', 'cleaned', 'failed') GROUP BY 2, 3;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO keymigrate.counter_deltas (name, run_id, state, worker_id, delta)
        SELECT 'photo', coalesce(run_id, ''), state, CASE WHEN state = 'in_progress' THEN coalesce(worker_id, '') ELSE '' END, -count(*)
          FROM old_rows GROUP BY 2, 3, 4;
    ELSE
        -- An update counts only the rows whose run, state or holder changed,
        -- and as finished (for the rate) only those that entered a final
        -- state from another one.
        INSERT INTO keymigrate.counter_deltas (name, run_id, state, worker_id, delta)
        SELECT 'photo', r, s, w, sum(d) FROM (
            SELECT coalesce(run_id, '') r, state s, CASE WHEN state = 'in_progress' THEN coalesce(worker_id, '') ELSE '' END w, 1 d FROM new_rows
            UNION ALL
            SELECT coalesce(run_id, ''), state, CASE WHEN state = 'in_progress' THEN coalesce(worker_id, '') ELSE '' END, -1 FROM old_rows
        ) c GROUP BY r, s, w HAVING sum(d) <> 0
        UNION ALL
        SELECT 'finished', coalesce(n.run_id, ''), n.state, '', count(*)
          FROM new_rows n JOIN old_rows o ON o.photo_id = n.photo_id
         WHERE n.state IN ('migrated', 'archived', 'cleaned', 'failed') AND n.state <> o.state
         GROUP BY 2, 3;
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION keymigrate.count_not_carried() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d bigint := 0;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT d + count(*) INTO d FROM new_rows WHERE committed_at IS NOT NULL AND not_carried IS NOT NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        SELECT d - count(*) INTO d FROM old_rows WHERE committed_at IS NOT NULL AND not_carried IS NOT NULL;
    END IF;
    IF d <> 0 THEN
        INSERT INTO keymigrate.counter_deltas (name, delta) VALUES ('not_carried', d);
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION keymigrate.reset_counters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM keymigrate.counter_deltas WHERE name = TG_ARGV[0];
    DELETE FROM keymigrate.counter_totals WHERE name = TG_ARGV[0];
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER photo_moves_count_insert AFTER INSERT ON keymigrate.photo_moves
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION keymigrate.count_photo_moves();
CREATE TRIGGER photo_moves_count_update AFTER UPDATE ON keymigrate.photo_moves
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION keymigrate.count_photo_moves();
CREATE TRIGGER photo_moves_count_delete AFTER DELETE ON keymigrate.photo_moves
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION keymigrate.count_photo_moves();
CREATE TRIGGER photo_moves_count_truncate AFTER TRUNCATE ON keymigrate.photo_moves
    FOR EACH STATEMENT EXECUTE FUNCTION keymigrate.reset_counters('photo');
CREATE TRIGGER object_moves_count_insert AFTER INSERT ON keymigrate.object_moves
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION keymigrate.count_not_carried();
CREATE TRIGGER object_moves_count_update AFTER UPDATE ON keymigrate.object_moves
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION keymigrate.count_not_carried();
CREATE TRIGGER object_moves_count_delete AFTER DELETE ON keymigrate.object_moves
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION keymigrate.count_not_carried();
CREATE TRIGGER object_moves_count_truncate AFTER TRUNCATE ON keymigrate.object_moves
    FOR EACH STATEMENT EXECUTE FUNCTION keymigrate.reset_counters('not_carried');

-- The counts of a ledger that already has rows (one pass, at upgrade time).
INSERT INTO keymigrate.counter_totals (name, run_id, state, worker_id, n)
SELECT 'photo', coalesce(run_id, ''), state, CASE WHEN state = 'in_progress' THEN coalesce(worker_id, '') ELSE '' END, count(*)
  FROM keymigrate.photo_moves GROUP BY 2, 3, 4;
INSERT INTO keymigrate.counter_totals (name, run_id, state, worker_id, n)
SELECT 'not_carried', '', '', '', count(*) FROM keymigrate.object_moves
 WHERE committed_at IS NOT NULL AND not_carried IS NOT NULL HAVING count(*) > 0;
UPDATE keymigrate.progress_last SET at = (SELECT max(greatest(swapped_at, archived_at, cleaned_at, failed_at)) FROM keymigrate.photo_moves);
INSERT INTO keymigrate.progress_buckets (run_id, bucket, n)
SELECT coalesce(run_id, ''), to_timestamp(floor(extract(epoch FROM greatest(swapped_at, archived_at)) / 10) * 10), count(*)
  FROM keymigrate.photo_moves WHERE state IN ('migrated', 'archived') AND greatest(swapped_at, archived_at) > now() - interval '1 day'
 GROUP BY 1, 2;

-- Photos the lost-message sweeper gave up on (ledger.MaxRescues, which a test
-- keeps equal to the 3 here): status counts them through this index.
CREATE INDEX photo_moves_stuck_idx ON keymigrate.photo_moves (photo_id)
    WHERE rescued >= 3 AND state IN ('enqueued', 'in_progress');

-- archived purge walks the archived photos in photo id order.
CREATE INDEX photo_moves_archived_idx ON keymigrate.photo_moves (photo_id) WHERE state = 'archived';

-- ledger compact walks the cleaned photos not yet compacted in photo id order.
CREATE INDEX photo_moves_compactable_idx ON keymigrate.photo_moves (photo_id)
    WHERE state = 'cleaned' AND compacted_at IS NULL;

-- The census: how many legacy rows the ledger had not recorded when someone
-- last counted them (a full scan of photos: `status --census`), or when a
-- producer run over every photo finished (none, then). Status shows pending
-- photos as the census minus the photos the ledger recorded since.
CREATE TABLE keymigrate.census (
    id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    taken_at    timestamptz NOT NULL,
    -- legacy rows (archived aside) without a photo_moves row
    pending     bigint NOT NULL,
    -- photo_moves rows at that moment (from the counters)
    ledger_rows bigint NOT NULL,
    -- how it was taken: 'count' or 'producer run <id>'
    source      text NOT NULL
);

-- The application's insert-path check (PhotoLegacyKeysClaimed) reads
-- object_moves by legacy key: cleanup's claims and deletions only.
CREATE INDEX object_moves_claimed_idx ON keymigrate.object_moves (old_key)
    WHERE delete_intent_at IS NOT NULL OR deleted_at IS NOT NULL;

-- Cursors of the passes that split across machines (verify, cleanup): one row
-- per pass, shard of n and scope; a pass killed at any point resumes from
-- its cursor, and a finished shard is not redone.
CREATE TABLE keymigrate.pass_cursors (
    pass        text NOT NULL,
    -- what the pass covers (a run id, '' for everything, or an option set)
    scope       text NOT NULL,
    shard       integer NOT NULL,
    shards      integer NOT NULL,
    cursor      text,
    -- the pass's own tallies and examples, as JSON (bounded by the pass)
    tally       jsonb NOT NULL DEFAULT '{}',
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (pass, scope, shards, shard)
);

-- +goose Down
DROP TABLE keymigrate.pass_cursors;
DROP INDEX keymigrate.object_moves_claimed_idx;
DROP INDEX keymigrate.photo_moves_stuck_idx;
DROP INDEX keymigrate.photo_moves_compactable_idx;
DROP INDEX keymigrate.photo_moves_archived_idx;
DROP TABLE keymigrate.census;
DROP TRIGGER object_moves_count_truncate ON keymigrate.object_moves;
DROP TRIGGER object_moves_count_delete ON keymigrate.object_moves;
DROP TRIGGER object_moves_count_update ON keymigrate.object_moves;
DROP TRIGGER object_moves_count_insert ON keymigrate.object_moves;
DROP TRIGGER photo_moves_count_truncate ON keymigrate.photo_moves;
DROP TRIGGER photo_moves_count_delete ON keymigrate.photo_moves;
DROP TRIGGER photo_moves_count_update ON keymigrate.photo_moves;
DROP TRIGGER photo_moves_count_insert ON keymigrate.photo_moves;
DROP FUNCTION keymigrate.reset_counters();
DROP FUNCTION keymigrate.count_not_carried();
DROP FUNCTION keymigrate.count_photo_moves();
DROP TABLE keymigrate.progress_last;
DROP TABLE keymigrate.progress_buckets;
DROP TABLE keymigrate.counter_totals;
DROP TABLE keymigrate.counter_deltas;
