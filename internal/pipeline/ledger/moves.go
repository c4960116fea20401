package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ObjectMove is one object copied to its user-scoped key and verified.
type ObjectMove struct {
	Kind              string
	OldKey            string
	NewKey            string
	Size              int64
	SourceETag        string
	ETag              string
	ChecksumAlgorithm string
	Checksum          string
	VerifyMethod      string
	ContentType       string
	// Superseded is set when the application wrote the new key itself (an
	// object no column references): keymigrate made no copy there, ETag is
	// empty, and the photo no longer needs the legacy object for this key.
	Superseded bool
	// NotCarried names what the copy could not carry (Object Lock retention,
	// a legal hold): reported, never silently dropped.
	NotCarried string
}

// Attempt is what PhotoMoveBeginAttempt decided about one delivery of a photo.
type Attempt struct {
	// State is the photo's ledger state after the call.
	State string
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
// attempt) and decides whether it may proceed. Finished states are kept, so a
// duplicate delivery does not regress them. A rolled-back photo stays rolled
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
         WHEN m.state IN ('migrated', 'archived', 'cleaned', 'deleted') THEN m.state
         WHEN m.state = 'rolled_back' AND NOT EXISTS (
              SELECT 1 FROM keymigrate.runs r WHERE r.run_id = $2 AND r.started_at > m.rolled_back_at) THEN m.state
         ELSE 'in_progress' END
RETURNING state, coalesce(job_id, ''), enqueued_at IS NOT NULL, attempts`, photoID, runID, workerID).Scan(&a.State, &a.JobID, &a.Known, &a.Attempts)
	if err != nil {
		return Attempt{}, fmt.Errorf("begin attempt on photo %s: %w", photoID, err)
	}
	a.Proceed = a.State != "rolled_back" && a.State != "deleted"
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
	State    string
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

// CopyRecord is what the ledger remembers of an earlier copy to a new key.
type CopyRecord struct {
	PhotoID string
	// ETag is the ETag keymigrate's own write returned ("" when only the
	// intent was recorded: the process stopped between the copy and its
	// record, or the copy never happened).
	ETag       string
	SourceETag string
	Superseded bool
	Committed  bool
}

// Intent is a copy about to be made.
type Intent struct {
	Kind   string
	OldKey string
	NewKey string
}

// sortByNewKey orders moves by new key: every statement that locks several
// object_moves rows takes them in this order, so two workers on one photo
// cannot deadlock.
func sortByNewKey[T any](items []T, key func(T) string) {
	sort.Slice(items, func(i, j int) bool { return key(items[i]) < key(items[j]) })
}

// ObjectMoveRecordIntents notes, before copying, every new key the photo's plan will
// write (so that a process killed between a copy and its record leaves a trace
// of it), and returns the photo's open copies — written for an earlier plan,
// never committed, not yet discarded — whose new keys are no longer in the
// plan: copies under a former owner's prefix, of a column the application has
// since moved. The caller discards them.
func (s *Store) ObjectMoveRecordIntents(ctx context.Context, photoID, jobID string, intents []Intent) ([]MovedObject, error) {
	sortByNewKey(intents, func(i Intent) string { return i.NewKey })
	var newKeys, kinds, oldKeys, jobs []string
	for _, i := range intents {
		newKeys, kinds, oldKeys = append(newKeys, i.NewKey), append(kinds, i.Kind), append(oldKeys, i.OldKey)
		// The legacy key's own job, as every other writer records it: lookups
		// by legacy key go through job_id.
		job := JobOf(i.OldKey)
		if job == "" {
			job = jobID
		}
		jobs = append(jobs, job)
	}
	rows, err := s.pool.Query(ctx, `
WITH ins AS (
  INSERT INTO keymigrate.object_moves AS o (new_key, photo_id, kind, old_key, job_id, size)
  SELECT nk, $1, k, ok, nullif(j, ''), 0 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS t(nk, k, ok, j)
  ON CONFLICT (new_key) DO UPDATE
     SET old_key = EXCLUDED.old_key, kind = EXCLUDED.kind, job_id = EXCLUDED.job_id,
         etag = CASE WHEN o.discarded_at IS NOT NULL OR o.new_deleted_at IS NOT NULL THEN NULL ELSE o.etag END,
         discarded_at = NULL
   WHERE o.photo_id = EXCLUDED.photo_id AND o.committed_at IS NULL)
SELECT `+movedObjectColumns("")+` FROM keymigrate.object_moves
 WHERE photo_id = $1 AND committed_at IS NULL AND discarded_at IS NULL AND new_deleted_at IS NULL
   AND superseded_at IS NULL AND NOT (new_key = ANY($2::text[]))
 ORDER BY new_key`, photoID, newKeys, kinds, oldKeys, jobs)
	if err != nil {
		return nil, fmt.Errorf("record the planned copies of photo %s: %w", photoID, err)
	}
	stale, err := pgx.CollectRows(rows, scanMovedObject)
	if err != nil {
		return nil, fmt.Errorf("record the planned copies of photo %s: %w", photoID, err)
	}
	return stale, nil
}

// ObjectMoveListOpen returns a photo's copies that were never committed and are not
// discarded: what must go if the photo is deleted before its swap.
func (s *Store) ObjectMoveListOpen(ctx context.Context, photoID string) ([]MovedObject, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+movedObjectColumns("")+` FROM keymigrate.object_moves
 WHERE photo_id = $1 AND committed_at IS NULL AND discarded_at IS NULL AND new_deleted_at IS NULL AND superseded_at IS NULL
 ORDER BY new_key`, photoID)
	if err != nil {
		return nil, fmt.Errorf("read open copies of photo %s: %w", photoID, err)
	}
	objs, err := pgx.CollectRows(rows, scanMovedObject)
	if err != nil {
		return nil, fmt.Errorf("read open copies of photo %s: %w", photoID, err)
	}
	return objs, nil
}

// ObjectMoveMarkDiscarded records that these uncommitted copies are gone (deleted by
// keymigrate, or found replaced by someone else and left to them).
func (s *Store) ObjectMoveMarkDiscarded(ctx context.Context, newKeys []string) error {
	if len(newKeys) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves SET discarded_at = now() WHERE new_key = ANY($1) AND committed_at IS NULL`, newKeys); err != nil {
		return fmt.Errorf("record %d discarded copies: %w", len(newKeys), err)
	}
	return nil
}

// ObjectMoveRecordCopies notes, right after copying and before verifying, the ETag each
// copy's own write returned. A later attempt that finds different bytes at
// such a key may overwrite them only if they are this copy (its source
// changed in between); bytes the ledger does not know were written by someone
// else and are never overwritten.
func (s *Store) ObjectMoveRecordCopies(ctx context.Context, photoID string, moves []ObjectMove) error {
	if len(moves) == 0 {
		return nil
	}
	sortByNewKey(moves, func(m ObjectMove) string { return m.NewKey })
	var newKeys, kinds, oldKeys, srcETags, etags, cts, jobs []string
	var sizes []int64
	for _, m := range moves {
		newKeys, kinds, oldKeys = append(newKeys, m.NewKey), append(kinds, m.Kind), append(oldKeys, m.OldKey)
		srcETags, etags, cts = append(srcETags, m.SourceETag), append(etags, m.ETag), append(cts, m.ContentType)
		jobs = append(jobs, JobOf(m.OldKey))
		sizes = append(sizes, m.Size)
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO keymigrate.object_moves (new_key, photo_id, kind, old_key, size, source_etag, etag, content_type, job_id, copied_at)
SELECT nk, $1, k, ok, sz, se, e, ct, nullif(j, ''), now()
  FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[]) AS t(nk, k, ok, sz, se, e, ct, j)
ON CONFLICT (new_key) DO UPDATE
   SET old_key = EXCLUDED.old_key, size = EXCLUDED.size, source_etag = EXCLUDED.source_etag,
       etag = EXCLUDED.etag, content_type = EXCLUDED.content_type, job_id = EXCLUDED.job_id, copied_at = now(),
       verified_at = NULL, discarded_at = NULL, new_deleted_at = NULL
 WHERE keymigrate.object_moves.photo_id = EXCLUDED.photo_id`,
		photoID, newKeys, kinds, oldKeys, sizes, srcETags, etags, cts, jobs)
	if err != nil {
		return fmt.Errorf("record %d copies of photo %s: %w", len(moves), photoID, err)
	}
	return nil
}

// ObjectMoveGetCopy returns the ledger's record of the object at newKey.
func (s *Store) ObjectMoveGetCopy(ctx context.Context, newKey string) (CopyRecord, bool, error) {
	var c CopyRecord
	err := s.pool.QueryRow(ctx, `SELECT photo_id, coalesce(etag, ''), coalesce(source_etag, ''), superseded_at IS NOT NULL, committed_at IS NOT NULL
  FROM keymigrate.object_moves WHERE new_key=$1 AND discarded_at IS NULL`, newKey).Scan(&c.PhotoID, &c.ETag, &c.SourceETag, &c.Superseded, &c.Committed)
	if errors.Is(err, pgx.ErrNoRows) {
		return CopyRecord{}, false, nil
	}
	if err != nil {
		return CopyRecord{}, false, fmt.Errorf("read copy record of %s: %w", newKey, err)
	}
	return c, true, nil
}

// JobOf returns the legacy job a legacy key belongs to ("" if none): the
// first segment after the prefix, as the ledger indexes it.
func JobOf(oldKey string) string {
	_, rest, ok := strings.Cut(oldKey, "/")
	if !ok {
		return ""
	}
	end := strings.IndexFunc(rest, func(r rune) bool {
		return !(r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	})
	if end < 0 {
		end = len(rest)
	}
	return rest[:end]
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
	var state string
	err := tx.QueryRow(ctx, `SELECT state FROM keymigrate.photo_moves WHERE photo_id = $1 FOR UPDATE`, photoID).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read ledger state: %w", err)
	}
	if state == "rolled_back" || state == "deleted" {
		return errStopped
	}
	return nil
}

// PhotoMoveSwap points the photo's row at its new keys, if and only if the row still
// holds exactly the keys and owner the worker planned from (compare-and-swap)
// and the ledger does not say the photo was rolled back meanwhile, and records
// the moves in the same transaction.
func (s *Store) PhotoMoveSwap(ctx context.Context, in SwapInput) (SwapOutcome, error) {
	outcome := RowChanged
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
UPDATE photos SET original_key = $2, processed_key = $3, thumbnail_key = $4
 WHERE id = $1 AND owner_id::text = $5
   AND original_key = $6 AND processed_key IS NOT DISTINCT FROM $7 AND thumbnail_key IS NOT DISTINCT FROM $8
   AND status IS DISTINCT FROM 'archived'`,
			in.PhotoID, in.New.Original, in.New.Processed, in.New.Thumbnail, in.OwnerID,
			in.Old.Original, in.Old.Processed, in.Old.Thumbnail)
		if err != nil {
			return fmt.Errorf("update photos row: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		if err := lockOpenState(ctx, tx, in.PhotoID); err != nil {
			return err
		}
		outcome = Swapped
		// The old keys are those of the first swap: if the row is swapped again
		// (the app wrote a legacy key after migration), rollback must still
		// restore the row as it was before the migration began. The new keys
		// are stored only when the key layout does not derive them from the
		// old keys, the owner and the photo (new_derived; see DeriveNewKeys):
		// always so for a first swap, and for a re-swap the old keys kept are
		// not the ones the new keys came from, so they are stored.
		derived := NewKeysDerived(in.Old, in.New, in.OwnerID, in.PhotoID)
		if _, err := tx.Exec(ctx, `
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
			in.New.Original, in.New.Processed, in.New.Thumbnail, derived); err != nil {
			return fmt.Errorf("record photo move: %w", err)
		}
		return commitObjects(ctx, tx, in.PhotoID, in.Objects)
	})
	if errors.Is(err, errStopped) {
		return Stopped, nil
	}
	if err != nil {
		return RowChanged, fmt.Errorf("swap keys of photo %s: %w", in.PhotoID, err)
	}
	return outcome, nil
}

// PhotoMoveCommitDerived records moves that change no row column (animations and
// metadata of a photo whose row was already user-scoped) as committed. It
// returns Stopped, writing nothing, if the photo was rolled back or deleted
// since the attempt began.
func (s *Store) PhotoMoveCommitDerived(ctx context.Context, photoID, runID, ownerID, jobID string, objects []ObjectMove) (SwapOutcome, error) {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockOpenState(ctx, tx, photoID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
UPDATE keymigrate.photo_moves SET state = CASE WHEN state IN ('in_progress', 'enqueued', 'failed') THEN 'migrated' ELSE state END,
       run_id = coalesce(run_id, $2), owner_id = coalesce(owner_id, nullif($4, '')), job_id = coalesce(job_id, nullif($3, '')),
       worker_id = NULL, updated_at = now(), last_reason = NULL, last_error = NULL
 WHERE photo_id = $1`, photoID, runID, jobID, ownerID); err != nil {
			return fmt.Errorf("record photo move: %w", err)
		}
		return commitObjects(ctx, tx, photoID, objects)
	})
	if errors.Is(err, errStopped) {
		return Stopped, nil
	}
	if err != nil {
		return Swapped, fmt.Errorf("commit moves of photo %s: %w", photoID, err)
	}
	return Swapped, nil
}

func commitObjects(ctx context.Context, tx pgx.Tx, photoID string, objects []ObjectMove) error {
	if len(objects) == 0 {
		return nil
	}
	sortByNewKey(objects, func(o ObjectMove) string { return o.NewKey })
	cols := make([][]string, 12)
	sizes := make([]int64, 0, len(objects))
	superseded := make([]bool, 0, len(objects))
	for _, o := range objects {
		for i, v := range []string{o.NewKey, o.Kind, o.OldKey, o.SourceETag, o.ETag, o.ChecksumAlgorithm, o.Checksum, o.VerifyMethod, o.ContentType, JobOf(o.OldKey), o.NotCarried} {
			cols[i] = append(cols[i], v)
		}
		sizes = append(sizes, o.Size)
		superseded = append(superseded, o.Superseded)
	}
	_, err := tx.Exec(ctx, `
INSERT INTO keymigrate.object_moves (new_key, photo_id, kind, old_key, source_etag, etag,
       checksum_algorithm, checksum, verify_method, content_type, job_id, not_carried, size, superseded_at,
       copied_at, verified_at, committed_at)
SELECT nk, $1, k, ok, se, nullif(e, ''), ca, cs, vm, ct, nullif(j, ''), nullif(nc, ''), sz, CASE WHEN sup THEN now() END,
       CASE WHEN sup THEN NULL ELSE now() END, CASE WHEN sup THEN NULL ELSE now() END, now()
  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::bool[])
       AS t(nk, k, ok, se, e, ca, cs, vm, ct, j, nc, sz, sup)
ON CONFLICT (new_key) DO UPDATE SET
       kind = EXCLUDED.kind, old_key = EXCLUDED.old_key, size = EXCLUDED.size, source_etag = EXCLUDED.source_etag,
       etag = EXCLUDED.etag, checksum_algorithm = EXCLUDED.checksum_algorithm, checksum = EXCLUDED.checksum,
       verify_method = EXCLUDED.verify_method, content_type = EXCLUDED.content_type, job_id = EXCLUDED.job_id,
       not_carried = EXCLUDED.not_carried, superseded_at = EXCLUDED.superseded_at,
       copied_at = CASE WHEN EXCLUDED.superseded_at IS NULL THEN coalesce(keymigrate.object_moves.copied_at, now()) END,
       verified_at = EXCLUDED.verified_at, committed_at = now(), deleted_at = NULL, discarded_at = NULL, new_deleted_at = NULL
 WHERE keymigrate.object_moves.photo_id = EXCLUDED.photo_id`,
		photoID, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9], cols[10], sizes, superseded)
	if err != nil {
		return fmt.Errorf("record %d moves: %w", len(objects), err)
	}
	return nil
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

// Failure is one failed attempt.
type Failure struct {
	PhotoID      string // empty when the message named none
	RunID        string
	MessageID    string
	Reason       string
	Permanent    bool
	Error        string
	Body         string // the message body, kept for malformed messages
	ReceiveCount int
}

// FailureRecord appends f to the failure log and, if the photo is known,
// updates its ledger row: failed when permanent, its last error otherwise.
func (s *Store) FailureRecord(ctx context.Context, f Failure) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
INSERT INTO keymigrate.failures (photo_id, run_id, message_id, reason, permanent, error, body, receive_count)
VALUES (nullif($1, ''), nullif($2, ''), nullif($3, ''), $4, $5, $6, nullif($7, ''), $8)`,
			f.PhotoID, f.RunID, f.MessageID, f.Reason, f.Permanent, f.Error, f.Body, f.ReceiveCount); err != nil {
			return err
		}
		if f.PhotoID == "" {
			return nil
		}
		// Only photos the ledger already knows get a state; an unknown photo id
		// is recorded in the failure log alone.
		_, err := tx.Exec(ctx, `
UPDATE keymigrate.photo_moves
   SET last_reason = $2, last_error = $3, updated_at = now(),
       state = CASE WHEN $4 AND state NOT IN ('migrated', 'archived', 'cleaned') THEN 'failed' ELSE state END,
       failed_at = CASE WHEN $4 THEN now() ELSE failed_at END
 WHERE photo_id = $1`, f.PhotoID, f.Reason, f.Error, f.Permanent)
		return err
	})
	if err != nil {
		return fmt.Errorf("record failure of photo %q (%s): %w", f.PhotoID, f.Reason, err)
	}
	return nil
}
