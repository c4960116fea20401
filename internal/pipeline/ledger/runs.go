package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

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
				return fmt.Errorf("run %s is an %s run, not a producer run; omit --run-id to start a new run", r.ID, r.Kind)
			}
			if r.FinishedAt != nil {
				return fmt.Errorf("%w: run %s finished at %s; omit --run-id to start a new run", ErrRunFinished, r.ID, r.FinishedAt.Format(time.RFC3339))
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

// PhotoMoveStates returns the ledger state of each of ids that has one.
//
// A photo rolled back after runID started reads RolledBackSinceRun: a
// rollback is final until a new run, so a resumed older run leaves it alone.
func (s *Store) PhotoMoveStates(ctx context.Context, runID string, ids []string) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `
SELECT m.photo_id, CASE WHEN m.state = 'rolled_back' AND m.rolled_back_at >= r.started_at THEN '`+RolledBackSinceRun+`' ELSE m.state END
  FROM keymigrate.photo_moves m LEFT JOIN keymigrate.runs r ON r.run_id = $2
 WHERE m.photo_id = ANY($1)`, ids, runID)
	if err != nil {
		return nil, fmt.Errorf("read photo states: %w", err)
	}
	defer rows.Close()
	states := make(map[string]string, len(ids))
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return nil, fmt.Errorf("read photo states: %w", err)
		}
		states[id] = st
	}
	return states, rows.Err()
}

// PhotoMoveRecordEnqueued marks photos as enqueued in run. It runs before the messages
// are sent, so a worker never sees a message whose ledger row is older than it;
// photos a worker is already handling or has finished keep their state, and so
// does a photo rolled back after run started.
func (s *Store) PhotoMoveRecordEnqueued(ctx context.Context, runID string, photos []Photo) error {
	if len(photos) == 0 {
		return nil
	}
	ids := make([]string, len(photos))
	owners := make([]*string, len(photos))
	for i, p := range photos {
		ids[i], owners[i] = p.ID, p.OwnerID
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO keymigrate.photo_moves (photo_id, run_id, state, owner_id, enqueued_at)
SELECT id, $1, 'enqueued', owner, now() FROM unnest($2::text[], $3::text[]) AS t(id, owner)
ON CONFLICT (photo_id) DO UPDATE
   SET run_id = EXCLUDED.run_id, state = 'enqueued', enqueued_at = now(), updated_at = now(),
       owner_id = EXCLUDED.owner_id
 WHERE keymigrate.photo_moves.state IN ('enqueued', 'failed')
    OR (keymigrate.photo_moves.state = 'rolled_back' AND keymigrate.photo_moves.rolled_back_at <
        (SELECT started_at FROM keymigrate.runs WHERE run_id = $1))`, runID, ids, owners)
	if err != nil {
		return fmt.Errorf("record %d photos as enqueued: %w", len(photos), err)
	}
	return nil
}

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
