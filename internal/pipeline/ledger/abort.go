package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrRunAborted is returned when photos are recorded for a run an operator
// aborted: the producer of that run must stop.
var ErrRunAborted = errors.New("run aborted")

// Abort is what RunAbort did.
type Abort struct {
	RunID string
	// At and By say when and by whom the run was aborted (the first abort,
	// when it already was).
	At time.Time
	By string
	// Already is true when the run had been aborted before this call.
	Already bool
	// Stopped counts the photos of the run, enqueued or in progress, that
	// will not be migrated (marked rolled back).
	Stopped int64
}

// RunAbort aborts a run: it records the abort, finishes the run (no producer
// resumes it), and marks its photos still enqueued or in progress rolled
// back, all in one transaction. The run's row is locked first, so a producer
// recording photos for it (PhotoMoveRecordEnqueued takes the same row lock)
// either committed before, and its photos are marked here, or sees the abort
// and records nothing. Workers then drop the run's messages (a rolled-back
// photo moves again only for a run started after), a worker holding a photo
// finds it rolled back when it swaps and discards its copies, and the sweeper
// never picks rolled-back photos. Photos the run already migrated stay
// migrated: rollback --all --run swaps them back. Aborting twice is harmless.
func (s *Store) RunAbort(ctx context.Context, runID, by string) (Abort, error) {
	a := Abort{RunID: runID}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var at *time.Time
		var who *string
		err := tx.QueryRow(ctx, `SELECT aborted_at, aborted_by FROM keymigrate.runs WHERE run_id = $1 FOR UPDATE`, runID).Scan(&at, &who)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s (`migratectl runs` lists the runs)", ErrRunNotFound, runID)
		}
		if err != nil {
			return err
		}
		if at != nil {
			a.Already, a.At = true, *at
			if who != nil {
				a.By = *who
			}
			return nil
		}
		if err := tx.QueryRow(ctx, `UPDATE keymigrate.runs SET aborted_at = now(), aborted_by = $2, finished_at = coalesce(finished_at, now())
 WHERE run_id = $1 RETURNING aborted_at`, runID, by).Scan(&a.At); err != nil {
			return err
		}
		a.By = by
		tag, err := tx.Exec(ctx, `UPDATE keymigrate.photo_moves
   SET state = 'rolled_back', rolled_back_at = now(), worker_id = NULL, updated_at = now()
 WHERE run_id = $1 AND state IN ('enqueued', 'in_progress')`, runID)
		a.Stopped = tag.RowsAffected()
		return err
	})
	if err != nil {
		return Abort{}, fmt.Errorf("abort run %s: %w", runID, err)
	}
	return a, nil
}
