package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The counters status reads (migration 00006): triggers on photo_moves and
// object_moves append deltas in the writers' own transactions, CounterFold
// folds them into totals. A snapshot reads the totals plus the deltas not yet
// folded, so it is exact at every commit and costs the same at a thousand
// photos and at a billion.

// counterFoldLock keeps folds single-flight: a fold that finds another under
// way skips (the other one does the work).
const counterFoldLock = 0x6b6d_636f_756e_7473 // "kmcounts"

// ProgressBucket is the width of the buckets the rate is counted in.
const ProgressBucket = 10 * time.Second

// CounterFold moves the counter deltas written since the last fold into the
// totals, and drops what nothing reads any more (zero counts of workers that
// left, rate buckets older than a day). It returns false when another fold
// was under way. Workers call it from their background loop, so the deltas
// stay few whether or not anyone watches status.
func (s *Store) CounterFold(ctx context.Context) (bool, error) {
	folded := false
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(counterFoldLock)).Scan(&folded); err != nil || !folded {
			return err
		}
		// All four statements of the CTE see one snapshot: d is read once.
		if _, err := tx.Exec(ctx, `
WITH d AS (DELETE FROM keymigrate.counter_deltas RETURNING name, run_id, state, worker_id, delta, at),
t AS (INSERT INTO keymigrate.counter_totals AS c (name, run_id, state, worker_id, n)
      SELECT name, run_id, state, worker_id, sum(delta) FROM d WHERE name <> 'finished' GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
      ON CONFLICT (name, run_id, state, worker_id) DO UPDATE SET n = c.n + EXCLUDED.n),
b AS (INSERT INTO keymigrate.progress_buckets AS p (run_id, bucket, n)
      SELECT run_id, to_timestamp(floor(extract(epoch FROM at) / $1) * $1), sum(delta) FROM d
       WHERE name = 'finished' AND state IN ('migrated', 'archived') GROUP BY 1, 2 ORDER BY 1, 2
      ON CONFLICT (run_id, bucket) DO UPDATE SET n = p.n + EXCLUDED.n)
UPDATE keymigrate.progress_last SET at = greatest(at, (SELECT max(at) FROM d WHERE name = 'finished'))`,
			ProgressBucket.Seconds()); err != nil {
			return fmt.Errorf("fold counters: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM keymigrate.counter_totals WHERE n = 0 AND worker_id <> ''`); err != nil {
			return fmt.Errorf("fold counters: drop finished workers: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM keymigrate.progress_buckets WHERE bucket < now() - interval '1 day'`); err != nil {
			return fmt.Errorf("fold counters: drop old rate buckets: %w", err)
		}
		return nil
	})
	return folded, err
}

// Counts is what the counters say, for the whole ledger or one run.
type Counts struct {
	// States counts photos by ledger state.
	States map[State]int64
	// Rows is every photo_moves row (the sum of States).
	Rows int64
	// Held counts photos in progress in the hands of a worker seen in the
	// last liveWindow.
	Held int64
	// Stuck counts photos the lost-message sweeper gave up on (MaxRescues);
	// always for the whole ledger.
	Stuck int64
	// Finished counts photos that reached migrated or archived in the last
	// window, and FinishedSpan is the time since the first of them finished
	// (at bucket precision), for the rate.
	Finished     int64
	FinishedSpan time.Duration
	// LastProgress is when a photo last reached migrated, archived, cleaned
	// or failed (nil: never); for the whole ledger.
	LastProgress *time.Time
	// NotCarried counts committed objects whose copy could not carry what
	// the source carried (retention, a legal hold, ACL grants); for the
	// whole ledger.
	NotCarried int64
}

// CounterRead reads the counters: for runID, or all runs when it is "".
// window is the span the recent finishes are counted over; liveWindow how
// recently a worker must have beaten to count as holding its photos.
func (s *Store) CounterRead(ctx context.Context, runID string, window, liveWindow time.Duration) (Counts, error) {
	c := Counts{States: map[State]int64{}}
	for _, st := range States() {
		c.States[st] = 0
	}
	err := s.inReadTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
SELECT state, sum(n)::bigint,
       coalesce(sum(n) FILTER (WHERE state = 'in_progress' AND worker_id IN (
           SELECT worker_id FROM keymigrate.workers WHERE last_seen > now() - $2::interval)), 0)::bigint
  FROM (SELECT run_id, state, worker_id, n FROM keymigrate.counter_totals WHERE name = 'photo'
        UNION ALL
        SELECT run_id, state, worker_id, delta FROM keymigrate.counter_deltas WHERE name = 'photo') c
 WHERE $1 = '' OR run_id = $1
 GROUP BY state`, runID, liveWindow.String())
		if err != nil {
			return err
		}
		for rows.Next() {
			var st State
			var n, held int64
			if err := rows.Scan(&st, &n, &held); err != nil {
				rows.Close()
				return err
			}
			c.States[st] = n
			c.Rows += n
			c.Held += held
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// The rate: folded buckets plus the deltas not yet folded.
		var first *time.Time
		if err := tx.QueryRow(ctx, `
SELECT coalesce(sum(n), 0)::bigint, min(bucket) FROM (
    SELECT run_id, bucket, n FROM keymigrate.progress_buckets WHERE bucket > now() - $2::interval - $3::interval
    UNION ALL
    SELECT run_id, to_timestamp(floor(extract(epoch FROM at) / $4) * $4), delta FROM keymigrate.counter_deltas
     WHERE name = 'finished' AND state IN ('migrated', 'archived')) b
 WHERE bucket > now() - $2::interval - $3::interval AND ($1 = '' OR run_id = $1)`,
			runID, window.String(), ProgressBucket.String(), ProgressBucket.Seconds()).Scan(&c.Finished, &first); err != nil {
			return err
		}
		if first != nil {
			c.FinishedSpan = max(time.Since(*first), 0)
		}
		if err := tx.QueryRow(ctx, `
SELECT greatest((SELECT at FROM keymigrate.progress_last),
                (SELECT max(at) FROM keymigrate.counter_deltas WHERE name = 'finished')),
       (SELECT coalesce(sum(n), 0) FROM keymigrate.counter_totals WHERE name = 'not_carried')
     + (SELECT coalesce(sum(delta), 0) FROM keymigrate.counter_deltas WHERE name = 'not_carried')`).Scan(&c.LastProgress, &c.NotCarried); err != nil {
			return err
		}
		return tx.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM keymigrate.photo_moves
 WHERE rescued >= %d AND state IN ('enqueued', 'in_progress')`, MaxRescues)).Scan(&c.Stuck)
	})
	if err != nil {
		return c, fmt.Errorf("read the ledger's counters: %w", err)
	}
	return c, nil
}

// Census is the last count of legacy photos the ledger had not recorded.
type Census struct {
	TakenAt time.Time
	// Pending is how many legacy rows (archived aside) had no ledger row then.
	Pending int64
	// LedgerRows is how many photo_moves rows there were then.
	LedgerRows int64
	// Source says how it was taken: "count" (a scan of photos) or the
	// producer run over every photo whose end recorded it.
	Source string
}

// PendingNow is the census's pending photos less those the ledger recorded
// since (rows is the ledger's row count now): exact as long as the
// application neither inserts legacy rows nor deletes legacy rows the
// producer has not reached since the census (both rare during a migration:
// new uploads are user-scoped), never below zero.
func (c Census) PendingNow(rows int64) int64 {
	return max(c.Pending-(rows-c.LedgerRows), 0)
}

// CensusGet returns the last census, if any.
func (s *Store) CensusGet(ctx context.Context) (Census, bool, error) {
	var c Census
	err := s.pool.QueryRow(ctx, `SELECT taken_at, pending, ledger_rows, source FROM keymigrate.census WHERE id = 1`).
		Scan(&c.TakenAt, &c.Pending, &c.LedgerRows, &c.Source)
	if errors.Is(err, pgx.ErrNoRows) {
		return Census{}, false, nil
	}
	if err != nil {
		return Census{}, false, fmt.Errorf("read the census: %w", err)
	}
	return c, true, nil
}

// CensusTake counts the legacy rows the ledger has not recorded, with one
// pass over photos (a deliberate full pass: minutes at a billion rows, so it
// is taken on demand, never by a status snapshot), and records the count.
func (s *Store) CensusTake(ctx context.Context) (Census, error) {
	c := Census{Source: "count"}
	err := s.inReadTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `
SELECT now(), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM keymigrate.photo_moves m WHERE m.photo_id = p.id::text))
  FROM photos p
 WHERE p.status IS DISTINCT FROM 'archived'
   AND (p.original_key NOT LIKE 'users/%' OR p.processed_key NOT LIKE 'users/%' OR p.thumbnail_key NOT LIKE 'users/%')`).
			Scan(&c.TakenAt, &c.Pending); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `
SELECT coalesce(sum(n), 0)::bigint FROM (
    SELECT n FROM keymigrate.counter_totals WHERE name = 'photo'
    UNION ALL SELECT delta FROM keymigrate.counter_deltas WHERE name = 'photo') c`).Scan(&c.LedgerRows)
	})
	if err != nil {
		return c, fmt.Errorf("count legacy photos not yet enqueued: %w", err)
	}
	return c, s.censusSave(ctx, c)
}

// CensusRecordRunEnd records that a producer run over every photo finished:
// every legacy row it found is in the ledger, so none is pending.
func (s *Store) CensusRecordRunEnd(ctx context.Context, runID string) error {
	c := Census{Pending: 0, Source: "producer run " + runID}
	if err := s.pool.QueryRow(ctx, `
SELECT now(), coalesce(sum(n), 0)::bigint FROM (
    SELECT n FROM keymigrate.counter_totals WHERE name = 'photo'
    UNION ALL SELECT delta FROM keymigrate.counter_deltas WHERE name = 'photo') c`).Scan(&c.TakenAt, &c.LedgerRows); err != nil {
		return fmt.Errorf("record the census of run %s: %w", runID, err)
	}
	return s.censusSave(ctx, c)
}

func (s *Store) censusSave(ctx context.Context, c Census) error {
	if _, err := s.pool.Exec(ctx, `
INSERT INTO keymigrate.census (id, taken_at, pending, ledger_rows, source) VALUES (1, $1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET taken_at = EXCLUDED.taken_at, pending = EXCLUDED.pending,
       ledger_rows = EXCLUDED.ledger_rows, source = EXCLUDED.source`, c.TakenAt, c.Pending, c.LedgerRows, c.Source); err != nil {
		return fmt.Errorf("record the census: %w", err)
	}
	return nil
}

// inReadTx runs fn in a read-only repeatable-read transaction: every
// statement sees the same snapshot.
func (s *Store) inReadTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}
