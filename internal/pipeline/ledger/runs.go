package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RunAddCounts adds to a run's counts and records how far it got (a
// checkpoint that is informative only for runs that are not producer passes).
func (s *Store) RunAddCounts(ctx context.Context, runID, progress string, add RunCounts) error {
	return s.RunAdvance(ctx, runID, progress, add)
}

// RunMigrationLatency reads, from the ledger, the time from a worker's start on
// a photo to its swap for up to limit migrated photos of runID (or, when
// runID is "", of the latest run that migrated any, found through the
// counters): the first in photo id order, which the run's index answers (any
// photos of a run show its latency; "most recent" would need an index on
// swap times that nothing else uses). A ledger that does not exist yet gives
// an empty Latency.
func (s *Store) RunMigrationLatency(ctx context.Context, runID string, limit int) (Latency, error) {
	var l Latency
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('keymigrate.photo_moves') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return l, err
	}
	if runID == "" {
		err := s.pool.QueryRow(ctx, `
SELECT r.run_id FROM keymigrate.runs r
 WHERE EXISTS (SELECT 1 FROM (SELECT run_id, state, n FROM keymigrate.counter_totals WHERE name = 'photo'
                              UNION ALL SELECT run_id, state, delta FROM keymigrate.counter_deltas WHERE name = 'photo') c
                WHERE c.run_id = r.run_id AND c.state IN ('migrated', 'cleaned') GROUP BY c.run_id HAVING sum(c.n) > 0)
 ORDER BY r.started_at DESC LIMIT 1`).Scan(&runID)
		if errors.Is(err, pgx.ErrNoRows) {
			return l, nil
		}
		if err != nil {
			return l, fmt.Errorf("find the latest run that migrated photos: %w", err)
		}
	}
	// Besides the distribution, how full the fleet kept its slots: the mean
	// number of photos in flight over the photos' span (the latencies' sum ÷
	// the span, Little's law) against the most ever in flight at once (a
	// running sum over the starts and swaps, a swap before a start at the
	// same instant). Time a slot spends outside start→swap (receiving,
	// deleting the message, the stage's ramp and tail) shows as a mean below
	// the peak.
	var sum, span float64
	var peak int64
	err := s.pool.QueryRow(ctx, `
WITH t AS (SELECT started_at AS s, swapped_at AS w, extract(epoch FROM swapped_at - started_at)::float8 AS d
             FROM keymigrate.photo_moves
            WHERE run_id = $1 AND state IN ('migrated', 'cleaned') AND swapped_at >= started_at
            ORDER BY run_id, photo_id LIMIT $2),
     e AS (SELECT s AS at, 1 AS delta FROM t UNION ALL SELECT w, -1 FROM t)
SELECT count(*), coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY d), 0), coalesce(percentile_cont(0.9) WITHIN GROUP (ORDER BY d), 0),
       coalesce(avg(d), 0), coalesce(sum(d), 0), coalesce(extract(epoch FROM max(w) - min(s))::float8, 0),
       (SELECT coalesce(max(n), 0) FROM (SELECT sum(delta) OVER (ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS n FROM e) x)
  FROM t`, runID, limit).Scan(&l.Photos, &l.P50, &l.P90, &l.Mean, &sum, &span, &peak)
	if err == nil && span > 0 && peak > 0 {
		l.PeakInFlight = peak
		l.Occupancy = min(1, sum/span/float64(peak))
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("read migration latencies: %w", err)
	}
	return l, nil
}

// Run is a producer run: a pass over the photos table that enqueues every
// legacy photo once. Restarting the producer with the same run resumes after
// its checkpoint.
type Run struct {
	ID         string
	StartedAt  time.Time
	FinishedAt *time.Time
	Checkpoint string
	Counts     RunCounts
	// Kind is RunProducer or RunAssign.
	Kind string
	// Selection is the subset the run enqueues; nil means every legacy photo.
	Selection *Selection
	// Shards is the number of shards the run is split into (0: none; the
	// run's checkpoint is Checkpoint).
	Shards int
}

// RunCounts are a run's running totals.
type RunCounts struct {
	Found, Enqueued, Skipped, Ownerless int64
}

// Add returns the sum of two counts.
func (c RunCounts) Add(o RunCounts) RunCounts {
	return RunCounts{c.Found + o.Found, c.Enqueued + o.Enqueued, c.Skipped + o.Skipped, c.Ownerless + o.Ownerless}
}

// ErrRunFinished is returned when resuming a run that already completed.
var ErrRunFinished = errors.New("run already finished")

// ErrNotProducerRun is returned when a producer is asked to resume a run of
// another kind.
var ErrNotProducerRun = errors.New("not a producer run")

const runColumns = `run_id, started_at, finished_at, coalesce(checkpoint, ''), found, enqueued, skipped, ownerless, kind, selection, shards`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.StartedAt, &r.FinishedAt, &r.Checkpoint, &r.Counts.Found, &r.Counts.Enqueued, &r.Counts.Skipped, &r.Counts.Ownerless, &r.Kind, &r.Selection, &r.Shards)
	return r, err
}

// RunStart resumes or starts a producer run selecting sel (nil: every legacy
// photo). With an id, that run is resumed (or created if new); a finished run
// is refused. Without one, the newest unfinished producer run is resumed, or a
// new one is created with newID. A run is only resumed with the selection it
// was started with (a *SelectionDiffersError otherwise).
func (s *Store) RunStart(ctx context.Context, id, newID string, sel *Selection) (Run, bool, error) {
	var r Run
	var resumed bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// Serialise concurrent producers on the run table.
		if _, err := tx.Exec(ctx, `LOCK TABLE keymigrate.runs IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		var err error
		if id != "" {
			r, err = scanRun(tx.QueryRow(ctx, `SELECT `+runColumns+` FROM keymigrate.runs WHERE run_id=$1`, id))
		} else {
			r, err = scanRun(tx.QueryRow(ctx, `SELECT `+runColumns+` FROM keymigrate.runs WHERE finished_at IS NULL AND kind = 'producer' ORDER BY started_at DESC LIMIT 1`))
		}
		switch {
		case err == nil:
			if r.Kind != RunProducer {
				return fmt.Errorf("run %s is an %s run: %w", r.ID, r.Kind, ErrNotProducerRun)
			}
			if r.FinishedAt != nil {
				return fmt.Errorf("%w: run %s finished at %s", ErrRunFinished, r.ID, r.FinishedAt.Format(time.RFC3339))
			}
			if !SameSelection(r.Selection, sel) {
				return &SelectionDiffersError{RunID: r.ID, Recorded: r.Selection, Asked: sel}
			}
			resumed = true
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if id == "" {
			id = newID
		}
		r, err = scanRun(tx.QueryRow(ctx, `INSERT INTO keymigrate.runs (run_id, selection) VALUES ($1, $2) RETURNING `+runColumns, id, sel.orNil()))
		return err
	})
	if err != nil {
		return Run{}, false, fmt.Errorf("start run: %w", err)
	}
	return r, resumed, nil
}

// RolledBackSinceRun is the state PhotoMoveStates reports for a photo rolled back
// after the run started.
const RolledBackSinceRun = "rolled_back_since_run"

// RunAdvance records that every photo up to lastID was handled in run,
// and adds to its counts.
func (s *Store) RunAdvance(ctx context.Context, runID, lastID string, add RunCounts) error {
	_, err := s.pool.Exec(ctx, `
UPDATE keymigrate.runs SET checkpoint=$2, found=found+$3, enqueued=enqueued+$4, skipped=skipped+$5, ownerless=ownerless+$6, updated_at=now()
 WHERE run_id=$1`, runID, lastID, add.Found, add.Enqueued, add.Skipped, add.Ownerless)
	if err != nil {
		return fmt.Errorf("advance checkpoint of run %s to %s: %w", runID, lastID, err)
	}
	return nil
}

// RunFinish marks run as complete.
func (s *Store) RunFinish(ctx context.Context, runID string) error {
	_, err := s.pool.Exec(ctx, `UPDATE keymigrate.runs SET finished_at=now(), updated_at=now() WHERE run_id=$1`, runID)
	if err != nil {
		return fmt.Errorf("finish run %s: %w", runID, err)
	}
	return nil
}

// RunGet reads one run.
func (s *Store) RunGet(ctx context.Context, runID string) (Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM keymigrate.runs WHERE run_id=$1`, runID))
	if err != nil {
		return Run{}, fmt.Errorf("read run %s: %w", runID, err)
	}
	return r, nil
}

// RunListUnfinishedProducer lists producer runs that have not finished, oldest
// first: one whose producer failed (an outage) may have recorded photos as
// enqueued without sending them, and rerunning it (producer --run-id) does.
func (s *Store) RunListUnfinishedProducer(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT run_id FROM keymigrate.runs WHERE kind = 'producer' AND finished_at IS NULL ORDER BY started_at`)
	if err != nil {
		return nil, fmt.Errorf("list unfinished producer runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list unfinished producer runs: %w", err)
	}
	return runs, nil
}

// ErrRunNotFound is returned for a run id the ledger does not know.
var ErrRunNotFound = errors.New("run not found")

// RunFind reads one run, wrapping ErrRunNotFound (with what to do) when the
// ledger has no such run.
func (s *Store) RunFind(ctx context.Context, runID string) (Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM keymigrate.runs WHERE run_id=$1`, runID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, fmt.Errorf("%w: the ledger has no run %q (migratectl runs lists them)", ErrRunNotFound, runID)
	}
	if err != nil {
		return Run{}, fmt.Errorf("read run %s: %w", runID, err)
	}
	return r, nil
}

// RunList returns every run, newest first.
func (s *Store) RunList(ctx context.Context) ([]Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+runColumns+` FROM keymigrate.runs ORDER BY started_at DESC, run_id`)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Run, error) { return scanRun(r) })
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return runs, nil
}

// RunCreate inserts a run that is not a producer pass (an archived-assign
// run), unfinished until RunFinish.
func (s *Store) RunCreate(ctx context.Context, id, kind string, sel *Selection) (Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `INSERT INTO keymigrate.runs (run_id, kind, selection) VALUES ($1, $2, $3) RETURNING `+runColumns, id, kind, sel.orNil()))
	if err != nil {
		return Run{}, fmt.Errorf("create run %s: %w", id, err)
	}
	return r, nil
}

// RunPhotoIDs returns up to limit photo ids the ledger attributes to run,
// after the given id, in order (the photos this run was the last to enqueue).
func (s *Store) RunPhotoIDs(ctx context.Context, runID, after string, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT photo_id FROM keymigrate.photo_moves WHERE run_id = $1 AND photo_id > $2 ORDER BY photo_id LIMIT $3`, runID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read photos of run %s: %w", runID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read photos of run %s: %w", runID, err)
	}
	return ids, nil
}

// RunScanRows returns the photos rows of up to limit photos of run, after the
// given photo id, in photo id order (a photo whose row was deleted is left
// out).
func (s *Store) RunScanRows(ctx context.Context, runID, after string, limit int) ([]Photo, string, error) {
	ids, err := s.RunPhotoIDs(ctx, runID, after, limit)
	if err != nil || len(ids) == 0 {
		return nil, "", err
	}
	idType, err := s.PhotoIDType(ctx)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE id = ANY($1::text[]::`+idType+`[]) ORDER BY photos.id`, ids)
	if err != nil {
		return nil, "", fmt.Errorf("read photos rows of run %s: %w", runID, err)
	}
	photos, err := collectPhotos(rows, after)
	return photos, ids[len(ids)-1], err
}
