package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PhotoMoveListOfJobs returns the photos the ledger records for each of jobs.
func (s *Store) PhotoMoveListOfJobs(ctx context.Context, jobs []string) (map[string][]JobPhoto, error) {
	rows, err := s.pool.Query(ctx, `SELECT photo_id, job_id, state FROM keymigrate.photo_moves WHERE job_id = ANY($1)`, jobs)
	if err != nil {
		return nil, fmt.Errorf("read the photos of %d legacy jobs: %w", len(jobs), err)
	}
	defer rows.Close()
	out := map[string][]JobPhoto{}
	for rows.Next() {
		var p JobPhoto
		if err := rows.Scan(&p.PhotoID, &p.JobID, &p.State); err != nil {
			return nil, fmt.Errorf("read the photos of legacy jobs: %w", err)
		}
		out[p.JobID] = append(out[p.JobID], p)
	}
	return out, rows.Err()
}

// PhotoMoveListLost marks as enqueued again, and returns, up to limit photos the
// ledger has had enqueued or in progress for longer than after with no live
// worker holding them (a worker is live if it beat within live). Concurrent
// sweepers pick disjoint photos.
func (s *Store) PhotoMoveListLost(ctx context.Context, after, live time.Duration, limit int) ([]LostPhoto, error) {
	rows, err := s.pool.Query(ctx, `
UPDATE keymigrate.photo_moves m
   SET state = 'enqueued', worker_id = NULL, enqueued_at = now(), updated_at = now(), rescued = m.rescued + 1
 WHERE m.photo_id IN (
   SELECT p.photo_id FROM keymigrate.photo_moves p
    WHERE p.state IN ('enqueued', 'in_progress') AND p.updated_at < now() - $1::interval AND p.rescued < $3
      AND NOT (p.state = 'in_progress' AND EXISTS (
          SELECT 1 FROM keymigrate.workers w WHERE w.worker_id = p.worker_id AND w.last_seen > now() - $2::interval))
    ORDER BY p.updated_at LIMIT $4
      FOR UPDATE SKIP LOCKED)
RETURNING m.photo_id, coalesce(m.run_id, '')`, after.String(), live.String(), MaxRescues, limit)
	if err != nil {
		return nil, fmt.Errorf("find photos whose messages were lost: %w", err)
	}
	lost, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LostPhoto])
	if err != nil {
		return nil, fmt.Errorf("find photos whose messages were lost: %w", err)
	}
	return lost, nil
}

// PhotoMoveCountOpen counts photos enqueued or in progress (not given up on by the
// sweeper): while there are any, the migration is not done.
func (s *Store) PhotoMoveCountOpen(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM keymigrate.photo_moves WHERE state IN ('enqueued', 'in_progress') AND rescued < $1`, MaxRescues).Scan(&n); err != nil {
		return 0, fmt.Errorf("count open photos: %w", err)
	}
	return n, nil
}

// Attempt is what PhotoMoveBeginAttempt decided about one delivery of a photo.
type Attempt struct {
	// State is the photo's ledger state after the call.
	State State
	// JobID is the legacy job the ledger knows for the photo ("" if none).
	JobID string
	// Known is true when the producer recorded the photo as enqueued: a photo
	// that is gone then was deleted by the application, while a message for a
	// photo the ledger never saw is an unknown photo.
	Known bool
	// Attempts counts the deliveries workers began on the photo, this one
	// included.
	Attempts int
	// Proceed is false when the photo must not be worked on: it was rolled
	// back and the message's run is not newer than the rollback, or the
	// application deleted it.
	Proceed bool
}

// PhotoMoveBeginAttempt records that workerID took a delivery of photo (one more
// attempt) and decides whether it may proceed. Finished states (purged
// included: a purged photo's row is still archived, so the worker settles it
// as already done without touching its state) are kept, so a duplicate
// delivery does not regress them. A rolled-back photo stays rolled
// back unless the message belongs to a run started after the rollback: the
// operator's rollback is final until a new run.
func (s *Store) PhotoMoveBeginAttempt(ctx context.Context, photoID, runID, workerID string) (Attempt, error) {
	var a Attempt
	err := s.pool.QueryRow(ctx, `
INSERT INTO keymigrate.photo_moves AS m (photo_id, run_id, state, attempts, started_at, worker_id)
VALUES ($1, $2, 'in_progress', 1, now(), $3)
ON CONFLICT (photo_id) DO UPDATE
   SET attempts = m.attempts + 1, started_at = now(), updated_at = now(), worker_id = $3,
       state = CASE
         WHEN m.state IN ('migrated', 'archived', 'cleaned', 'deleted', 'purged') THEN m.state
         WHEN m.state = 'rolled_back' AND NOT EXISTS (
              SELECT 1 FROM keymigrate.runs r WHERE r.run_id = $2 AND r.started_at > m.rolled_back_at) THEN m.state
         ELSE 'in_progress' END
RETURNING state, coalesce(job_id, ''), enqueued_at IS NOT NULL, attempts`, photoID, runID, workerID).Scan(&a.State, &a.JobID, &a.Known, &a.Attempts)
	if err != nil {
		return Attempt{}, fmt.Errorf("begin attempt on photo %s: %w", photoID, err)
	}
	a.Proceed = !a.State.Stopped()
	return a, nil
}

// PhotoMoveRelease puts a photo whose message was handed back (pause, shutdown,
// a dependency down, a retry later) from in_progress back to enqueued:
// in_progress means in a worker's hands. Only the worker holding the photo
// releases it: another may already have taken the fresh message.
func (s *Store) PhotoMoveRelease(ctx context.Context, photoID, workerID string) error {
	_, err := s.pool.Exec(ctx, `UPDATE keymigrate.photo_moves SET state = 'enqueued', worker_id = NULL, updated_at = now()
 WHERE photo_id = $1 AND state = 'in_progress' AND worker_id IS NOT DISTINCT FROM $2`, photoID, workerID)
	if err != nil {
		return fmt.Errorf("mark photo %s released: %w", photoID, err)
	}
	return nil
}

// PhotoMoveMarkDeleted records that the application deleted the photo (its row is
// gone). Its legacy objects become cleanup's to delete once no other row
// needs them; nothing keymigrate does brings the photo back.
func (s *Store) PhotoMoveMarkDeleted(ctx context.Context, photoID string) error {
	_, err := s.pool.Exec(ctx, `UPDATE keymigrate.photo_moves SET state = 'deleted', deleted_at = coalesce(deleted_at, now()), worker_id = NULL, updated_at = now()
 WHERE photo_id = $1 AND state <> 'deleted'`, photoID)
	if err != nil {
		return fmt.Errorf("mark photo %s deleted: %w", photoID, err)
	}
	return nil
}

// LedgerPhoto is what the ledger knows of a photo.
type LedgerPhoto struct {
	PhotoID  string
	RunID    string
	State    State
	OwnerID  *string
	JobID    *string
	Attempts int
}

// PhotoMoveGet reads a photo's ledger row; ok is false if there is none.
func (s *Store) PhotoMoveGet(ctx context.Context, photoID string) (LedgerPhoto, bool, error) {
	var l LedgerPhoto
	err := s.pool.QueryRow(ctx, `SELECT photo_id, coalesce(run_id, ''), state, owner_id, job_id, attempts FROM keymigrate.photo_moves WHERE photo_id=$1`, photoID).
		Scan(&l.PhotoID, &l.RunID, &l.State, &l.OwnerID, &l.JobID, &l.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return LedgerPhoto{}, false, nil
	}
	if err != nil {
		return LedgerPhoto{}, false, fmt.Errorf("read ledger of photo %s: %w", photoID, err)
	}
	return l, true, nil
}

// SwapInput describes a key swap: the row as the worker read it, the keys to
// write, and the verified moves that justify them.
type SwapInput struct {
	PhotoID string
	RunID   string
	OwnerID string
	JobID   string
	Old     Keys
	New     Keys
	// Objects are all moves of this photo, including animations and metadata,
	// which the row does not reference but whose moves commit with it.
	Objects []ObjectMove
}

// SwapOutcome is how a Swap or PhotoMoveCommitDerived ended.
type SwapOutcome int

// The outcomes of a swap.
const (
	// Swapped: the row points at the new keys, the moves are committed.
	Swapped SwapOutcome = iota
	// RowChanged: the application changed the row since it was read; nothing
	// was written. Re-read and re-plan.
	RowChanged
	// Stopped: the ledger says the photo was rolled back (or deleted) since
	// this attempt began; nothing was written and the attempt must end.
	Stopped
)

// errStopped aborts a swap transaction whose photo was rolled back meanwhile.
var errStopped = errors.New("the photo was rolled back or deleted since this attempt began")

// ErrStopped is returned by Archive when the photo was rolled back or deleted
// since the attempt began.
var ErrStopped = errStopped

// lockOpenState locks the photo's ledger row and returns errStopped if an
// operator rolled the photo back (or it was recorded deleted) since the
// attempt began. It runs inside the swap's transaction, after the row update,
// so that a rollback that committed before the swap took the row lock is
// seen, and one that comes after sees the swap.
func lockOpenState(ctx context.Context, tx pgx.Tx, photoID string) error {
	return openState(tx.QueryRow(ctx, lockOpenStateSQL, photoID))
}

const lockOpenStateSQL = `SELECT state FROM keymigrate.photo_moves WHERE photo_id = $1 FOR UPDATE`

// queueLockOpenState queues lockOpenState's statement for a swap's first
// round trip (twoTrips); its read is lockOpenState's answer.
func queueLockOpenState(b *pgx.Batch, photoID string) func(pgx.BatchResults) error {
	b.Queue(lockOpenStateSQL, photoID)
	return func(br pgx.BatchResults) error { return openState(br.QueryRow()) }
}

// openState reads lockOpenStateSQL's answer: errStopped for a photo the
// ledger says was rolled back or deleted, nil for an open one or none.
func openState(row pgx.Row) error {
	var state State
	err := row.Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read ledger state: %w", err)
	}
	if state.Stopped() {
		return errStopped
	}
	return nil
}

// PhotoMoveSwap points the photo's row at its new keys, if and only if the row still
// holds exactly the keys and owner the worker planned from (compare-and-swap)
// and the ledger does not say the photo was rolled back meanwhile, and records
// the moves in the same transaction. The transaction takes two round trips
// (twoTrips): the row's update and the locks that decide, then the records
// and the commit.
func (s *Store) PhotoMoveSwap(ctx context.Context, in SwapInput) (SwapOutcome, error) {
	err := s.twoTrips(ctx, func(b *pgx.Batch) func(pgx.BatchResults) error {
		b.Queue(`
UPDATE photos SET original_key = $2, processed_key = $3, thumbnail_key = $4
 WHERE id = $1 AND owner_id::text = $5
   AND original_key = $6 AND processed_key IS NOT DISTINCT FROM $7 AND thumbnail_key IS NOT DISTINCT FROM $8
   AND status IS DISTINCT FROM 'archived'`,
			in.PhotoID, in.New.Original, in.New.Processed, in.New.Thumbnail, in.OwnerID,
			in.Old.Original, in.Old.Processed, in.Old.Thumbnail)
		// The ledger row is locked after the row update, so that a rollback
		// that committed before the swap took the row lock is seen, and one
		// that comes after sees the swap (lockOpenState). When the update
		// changed nothing the locks taken after it are released unused.
		readState := queueLockOpenState(b, in.PhotoID)
		readDiscards := queueDiscardedSince(b, in.PhotoID, in.Objects)
		return func(br pgx.BatchResults) error {
			tag, err := br.Exec()
			if err != nil {
				return fmt.Errorf("update photos row: %w", err)
			}
			if tag.RowsAffected() == 0 {
				return errRowChanged // decided before the locks, as one call at a time
			}
			if err := readState(br); err != nil {
				return err
			}
			return readDiscards(br)
		}
	}, func(b *pgx.Batch) func(pgx.BatchResults) error {
		// The old keys are those of the first swap: if the row is swapped again
		// (the app wrote a legacy key after migration), rollback must still
		// restore the row as it was before the migration began. The new keys
		// are stored only when the key layout does not derive them from the
		// old keys, the owner and the photo (new_derived; see DeriveNewKeys):
		// always so for a first swap, and for a re-swap the old keys kept are
		// not the ones the new keys came from, so they are stored.
		derived := NewKeysDerived(in.Old, in.New, in.OwnerID, in.PhotoID)
		b.Queue(`
INSERT INTO keymigrate.photo_moves AS m (photo_id, run_id, state, owner_id, job_id, attempts,
       old_original_key, old_processed_key, old_thumbnail_key, new_derived,
       new_original_key, new_processed_key, new_thumbnail_key, swapped_at, last_reason, last_error)
VALUES ($1, $2, 'migrated', $3, $4, 1, $5, $6, $7, $11,
        CASE WHEN NOT $11 THEN $8 END, CASE WHEN NOT $11 THEN $9 END, CASE WHEN NOT $11 THEN $10 END, now(), NULL, NULL)
ON CONFLICT (photo_id) DO UPDATE SET
       run_id = EXCLUDED.run_id, owner_id = EXCLUDED.owner_id, job_id = EXCLUDED.job_id,
       old_original_key  = CASE WHEN m.state IN ('migrated', 'cleaned') THEN m.old_original_key  ELSE EXCLUDED.old_original_key END,
       old_processed_key = CASE WHEN m.state IN ('migrated', 'cleaned') THEN m.old_processed_key ELSE EXCLUDED.old_processed_key END,
       old_thumbnail_key = CASE WHEN m.state IN ('migrated', 'cleaned') THEN m.old_thumbnail_key ELSE EXCLUDED.old_thumbnail_key END,
       new_derived = $11 AND m.state NOT IN ('migrated', 'cleaned'),
       new_original_key  = CASE WHEN $11 AND m.state NOT IN ('migrated', 'cleaned') THEN NULL ELSE $8 END,
       new_processed_key = CASE WHEN $11 AND m.state NOT IN ('migrated', 'cleaned') THEN NULL ELSE $9 END,
       new_thumbnail_key = CASE WHEN $11 AND m.state NOT IN ('migrated', 'cleaned') THEN NULL ELSE $10 END,
       state = 'migrated', worker_id = NULL, swapped_at = now(), updated_at = now(),
       last_reason = NULL, last_error = NULL`,
			in.PhotoID, in.RunID, in.OwnerID, in.JobID, in.Old.Original, in.Old.Processed, in.Old.Thumbnail,
			in.New.Original, in.New.Processed, in.New.Thumbnail, derived)
		readObjects := queueCommitObjects(b, in.PhotoID, in.Objects)
		return func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("record photo move: %w", err)
			}
			return readObjects(br)
		}
	})
	return swapOutcome(err, "swap keys of photo "+in.PhotoID)
}

// errRowChanged ends a swap whose row the application changed since it was
// read: nothing is written.
var errRowChanged = fmt.Errorf("the row changed: %w", errNothingToWrite)

// swapOutcome turns how a swap's or a commit's transaction ended into its
// outcome: stopped by a rollback or deletion, re-planned after a changed row
// or a discard, or swapped.
func swapOutcome(err error, what string) (SwapOutcome, error) {
	switch {
	case err == nil:
		return Swapped, nil
	case errors.Is(err, errRowChanged):
		return RowChanged, nil
	case errors.Is(err, errStopped):
		return Stopped, nil
	case errors.Is(err, errDiscarded):
		// Re-planned like a changed row: the next pass's intents re-open
		// the move (once its discard is settled) and copy it again.
		return RowChanged, nil
	}
	return RowChanged, fmt.Errorf("%s: %w", what, err)
}

// PhotoMoveCommitDerived records moves that change no row column (animations and
// metadata of a photo whose row was already user-scoped) as committed. It
// returns Stopped, writing nothing, if the photo was rolled back or deleted
// since the attempt began, and RowChanged, writing nothing, if a move was
// claimed for a discard since the attempt's intents (queueDiscardedSince).
// Like a swap, it takes two round trips: the locks, then the records and the
// commit.
func (s *Store) PhotoMoveCommitDerived(ctx context.Context, photoID, runID, ownerID, jobID string, objects []ObjectMove) (SwapOutcome, error) {
	err := s.twoTrips(ctx, func(b *pgx.Batch) func(pgx.BatchResults) error {
		readState := queueLockOpenState(b, photoID)
		readDiscards := queueDiscardedSince(b, photoID, objects)
		return func(br pgx.BatchResults) error {
			if err := readState(br); err != nil {
				return err
			}
			return readDiscards(br)
		}
	}, func(b *pgx.Batch) func(pgx.BatchResults) error {
		b.Queue(`
UPDATE keymigrate.photo_moves SET state = CASE WHEN state IN ('in_progress', 'enqueued', 'failed') THEN 'migrated' ELSE state END,
       run_id = coalesce(run_id, $2), owner_id = coalesce(owner_id, nullif($4, '')), job_id = coalesce(job_id, nullif($3, '')),
       worker_id = NULL, updated_at = now(), last_reason = NULL, last_error = NULL
 WHERE photo_id = $1`, photoID, runID, jobID, ownerID)
		readObjects := queueCommitObjects(b, photoID, objects)
		return func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("record photo move: %w", err)
			}
			return readObjects(br)
		}
	})
	if err != nil && !errors.Is(err, errStopped) && !errors.Is(err, errDiscarded) {
		// Kept as it was: a failed commit of derived moves reports Swapped
		// with its error (the worker looks at the error).
		return Swapped, fmt.Errorf("commit moves of photo %s: %w", photoID, err)
	}
	return swapOutcome(err, "")
}

// PhotoMoveArchive marks an ownerless photo archived, by compare-and-swap on its keys,
// owner and status, and records its previous status for rollback. It returns
// false when the row changed in the meantime.
func (s *Store) PhotoMoveArchive(ctx context.Context, p Photo, runID string) (bool, error) {
	var done bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
UPDATE photos SET status = 'archived'
 WHERE id = $1 AND owner_id IS NULL AND status IS NOT DISTINCT FROM $2
   AND original_key = $3 AND processed_key IS NOT DISTINCT FROM $4 AND thumbnail_key IS NOT DISTINCT FROM $5`,
			p.ID, p.Status, p.Original, p.Processed, p.Thumbnail)
		if err != nil {
			return fmt.Errorf("update photos row: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		if err := lockOpenState(ctx, tx, p.ID); err != nil {
			return err
		}
		done = true
		_, err = tx.Exec(ctx, `
INSERT INTO keymigrate.photo_moves (photo_id, run_id, state, attempts, old_original_key, old_processed_key, old_thumbnail_key, old_status, archived_at)
VALUES ($1, $2, 'archived', 1, $3, $4, $5, $6, now())
ON CONFLICT (photo_id) DO UPDATE SET
       run_id = EXCLUDED.run_id, state = 'archived', old_original_key = EXCLUDED.old_original_key,
       old_processed_key = EXCLUDED.old_processed_key, old_thumbnail_key = EXCLUDED.old_thumbnail_key,
       old_status = EXCLUDED.old_status, archived_at = now(), updated_at = now(), last_reason = NULL, last_error = NULL`,
			p.ID, runID, p.Original, p.Processed, p.Thumbnail, p.Status)
		if err != nil {
			return fmt.Errorf("record archive: %w", err)
		}
		return nil
	})
	if errors.Is(err, errStopped) {
		return false, ErrStopped
	}
	if err != nil {
		return false, fmt.Errorf("archive photo %s: %w", p.ID, err)
	}
	return done, nil
}

// PhotoMoveMigratedJobs maps the given job ids to the photo migrated from each.
func (s *Store) PhotoMoveMigratedJobs(ctx context.Context, jobs []string) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT job_id, photo_id FROM keymigrate.photo_moves WHERE state IN ('migrated', 'cleaned') AND job_id = ANY($1)`, jobs)
	if err != nil {
		return nil, fmt.Errorf("look up migrated jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var j, p string
		if err := rows.Scan(&j, &p); err != nil {
			return nil, err
		}
		out[j] = p
	}
	return out, rows.Err()
}

// PhotoMove is a photo's ledger row as rollback needs it.
type PhotoMove struct {
	PhotoID   string
	RunID     string
	State     State
	OwnerID   *string
	Old       Keys
	OldStatus *string
	New       Keys
}

// PhotoMoveRollbackCandidates returns up to limit photos, after the given id, that a
// rollback can undo (migrated, cleaned or archived), optionally only one photo
// or one run.
func (s *Store) PhotoMoveRollbackCandidates(ctx context.Context, photoID, runID, after string, limit int) ([]PhotoMove, error) {
	rows, err := s.pool.Query(ctx, `
SELECT photo_id, coalesce(run_id, ''), state, owner_id, old_original_key, old_processed_key, old_thumbnail_key, old_status,
       new_original_key, new_processed_key, new_thumbnail_key, new_derived
  FROM keymigrate.photo_moves
 WHERE state IN ('migrated', 'cleaned', 'archived') AND compacted_at IS NULL AND photo_id > $1
   AND ($2 = '' OR photo_id = $2) AND ($3 = '' OR run_id = $3)
 ORDER BY photo_id LIMIT $4`, after, photoID, runID, limit)
	if err != nil {
		return nil, fmt.Errorf("read rollback candidates: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PhotoMove, error) {
		var m PhotoMove
		var oldOrig, newOrig *string
		var derived bool
		err := r.Scan(&m.PhotoID, &m.RunID, &m.State, &m.OwnerID, &oldOrig, &m.Old.Processed, &m.Old.Thumbnail, &m.OldStatus,
			&newOrig, &m.New.Processed, &m.New.Thumbnail, &derived)
		if err != nil {
			return m, err
		}
		if oldOrig != nil {
			m.Old.Original = *oldOrig
		}
		if newOrig != nil {
			m.New.Original = *newOrig
		}
		if derived {
			owner := ""
			if m.OwnerID != nil {
				owner = *m.OwnerID
			}
			keys, ok := DeriveNewKeys(m.Old, owner, m.PhotoID)
			if !ok {
				return m, fmt.Errorf("photo %s: the ledger says its new keys derive from its old keys, but %q does not parse", m.PhotoID, m.Old.Original)
			}
			m.New = keys
		}
		return m, nil
	})
}

// PhotoMoveRollBack puts a photo's row back as the ledger recorded it before the
// migration, by compare-and-swap: a migrated row must still hold exactly the
// new keys, an archived row must still be archived and ownerless with its old
// keys. It returns false, changing nothing, if the app changed the row since.
func (s *Store) PhotoMoveRollBack(ctx context.Context, m PhotoMove) (bool, error) {
	var done bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var sql string
		var args []any
		switch m.State {
		case StateArchived:
			sql = `UPDATE photos SET status = $2 WHERE id = $1 AND status = 'archived' AND owner_id IS NULL
			        AND original_key = $3 AND processed_key IS NOT DISTINCT FROM $4 AND thumbnail_key IS NOT DISTINCT FROM $5`
			args = []any{m.PhotoID, m.OldStatus, m.Old.Original, m.Old.Processed, m.Old.Thumbnail}
		case StateMigrated, StateCleaned:
			sql = `UPDATE photos SET original_key = $2, processed_key = $3, thumbnail_key = $4
			        WHERE id = $1 AND original_key = $5 AND processed_key IS NOT DISTINCT FROM $6 AND thumbnail_key IS NOT DISTINCT FROM $7`
			args = []any{m.PhotoID, m.Old.Original, m.Old.Processed, m.Old.Thumbnail, m.New.Original, m.New.Processed, m.New.Thumbnail}
		default:
			return fmt.Errorf("state %s cannot be rolled back", m.State)
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("update photos row: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		// Cleanup claims legacy objects with the rows locked (CleanupClaim):
		// one it claimed after this photo's checks ran is being deleted, or is.
		var deleting bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keymigrate.object_moves
 WHERE photo_id = $1 AND committed_at IS NOT NULL AND (delete_intent_at IS NOT NULL OR deleted_at IS NOT NULL))`, m.PhotoID).Scan(&deleting); err != nil {
			return fmt.Errorf("look for cleanup's deletions: %w", err)
		}
		if deleting {
			return ErrLegacyDeleting
		}
		done = true
		_, err = tx.Exec(ctx, `UPDATE keymigrate.photo_moves SET state = 'rolled_back', rolled_back_at = now(), updated_at = now() WHERE photo_id = $1`, m.PhotoID)
		return err
	})
	if errors.Is(err, ErrLegacyDeleting) {
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("roll back photo %s: %w", m.PhotoID, err)
	}
	return done, nil
}

// ErrLegacyDeleting is returned by PhotoMoveRollBack when cleanup has claimed (or
// deleted) legacy objects of the photo that its checks saw present: run the
// rollback again once cleanup finished, it copies them back first.
var ErrLegacyDeleting = errors.New("cleanup is deleting this photo's legacy objects")

// PhotoMoveStates returns the ledger state of each of ids that has one.
//
// A photo rolled back after runID started reads RolledBackSinceRun: a
// rollback is final until a new run, so a resumed older run leaves it alone.
func (s *Store) PhotoMoveStates(ctx context.Context, runID string, ids []string) (map[string]State, error) {
	rows, err := s.pool.Query(ctx, `
SELECT m.photo_id, CASE WHEN m.state = 'rolled_back' AND m.rolled_back_at >= r.started_at THEN '`+RolledBackSinceRun+`' ELSE m.state END
  FROM keymigrate.photo_moves m LEFT JOIN keymigrate.runs r ON r.run_id = $2
 WHERE m.photo_id = ANY($1)`, ids, runID)
	if err != nil {
		return nil, fmt.Errorf("read photo states: %w", err)
	}
	defer rows.Close()
	states := make(map[string]State, len(ids))
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return nil, fmt.Errorf("read photo states: %w", err)
		}
		states[id] = State(st)
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
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// The run's row lock orders this against RunAbort: an aborted run
		// records nothing more.
		var aborted *time.Time
		err := tx.QueryRow(ctx, `SELECT aborted_at FROM keymigrate.runs WHERE run_id = $1 FOR SHARE`, runID).Scan(&aborted)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if aborted != nil {
			return fmt.Errorf("%w: run %s was aborted at %s", ErrRunAborted, runID, aborted.UTC().Format(time.RFC3339))
		}
		_, err = tx.Exec(ctx, `
INSERT INTO keymigrate.photo_moves (photo_id, run_id, state, owner_id, enqueued_at)
SELECT id, $1, 'enqueued', owner, now() FROM unnest($2::text[], $3::text[]) AS t(id, owner)
ON CONFLICT (photo_id) DO UPDATE
   SET run_id = EXCLUDED.run_id, state = 'enqueued', enqueued_at = now(), updated_at = now(),
       owner_id = EXCLUDED.owner_id
 WHERE keymigrate.photo_moves.state IN ('enqueued', 'failed')
    OR (keymigrate.photo_moves.state = 'rolled_back' AND keymigrate.photo_moves.rolled_back_at <
        (SELECT started_at FROM keymigrate.runs WHERE run_id = $1))`, runID, ids, owners)
		return err
	})
	if err != nil {
		return fmt.Errorf("record %d photos as enqueued: %w", len(photos), err)
	}
	return nil
}

// PhotoMoveTotals is the ledger's account of every photo it records, as a
// whole: what the bench reads of a fleet's run (internal/harness/bench).
type PhotoMoveTotals struct {
	// Finished are the photos migrated or archived, Unfinished the rest.
	Finished, Unfinished int64
	// FirstStarted is when the first finished photo was started and
	// LastFinished when the last one was swapped or archived (nil: none
	// finished).
	FirstStarted, LastFinished *time.Time
	// Retries are the attempts on photos beyond each one's first, Failed the
	// photos left failed, HandedBack the failures recorded as not permanent
	// (a photo handed back to the queue for a later delivery).
	Retries, Failed, HandedBack int64
}

// PhotoMoveTotals reads the totals of every photo the ledger records. It
// reads the whole of photo_moves: the bench calls it once after a measured
// run, and no product command does.
func (s *Store) PhotoMoveTotals(ctx context.Context) (PhotoMoveTotals, error) {
	var t PhotoMoveTotals
	err := s.pool.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE state IN ('migrated', 'archived')),
       count(*) FILTER (WHERE state NOT IN ('migrated', 'archived')),
       min(started_at) FILTER (WHERE state IN ('migrated', 'archived')),
       max(greatest(swapped_at, archived_at)) FILTER (WHERE state IN ('migrated', 'archived'))
  FROM keymigrate.photo_moves`).Scan(&t.Finished, &t.Unfinished, &t.FirstStarted, &t.LastFinished)
	if err != nil {
		return t, fmt.Errorf("read fleet timing: %w", err)
	}
	err = s.pool.QueryRow(ctx, `
SELECT coalesce(sum(attempts - 1) FILTER (WHERE attempts > 1), 0),
       count(*) FILTER (WHERE state = 'failed'),
       (SELECT count(*) FROM keymigrate.failures WHERE NOT permanent)
  FROM keymigrate.photo_moves`).Scan(&t.Retries, &t.Failed, &t.HandedBack)
	if err != nil {
		return t, fmt.Errorf("read retries: %w", err)
	}
	return t, nil
}
