package ledger

import (
	"context"
	"errors"
	"fmt"

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
}

// MarkInProgress records that a worker started on photo (one more attempt).
// Finished states are kept, so a duplicate delivery does not regress them.
func (s *Store) MarkInProgress(ctx context.Context, photoID, runID string, ownerID *string) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO keymigrate.photo_moves (photo_id, run_id, state, owner_id, attempts, started_at)
VALUES ($1, $2, 'in_progress', $3, 1, now())
ON CONFLICT (photo_id) DO UPDATE
   SET attempts = keymigrate.photo_moves.attempts + 1, started_at = now(), updated_at = now(),
       state = CASE WHEN keymigrate.photo_moves.state IN ('migrated', 'archived', 'cleaned')
                    THEN keymigrate.photo_moves.state ELSE 'in_progress' END`, photoID, runID, ownerID)
	if err != nil {
		return fmt.Errorf("mark photo %s in progress: %w", photoID, err)
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

// GetPhotoMove reads a photo's ledger row; ok is false if there is none.
func (s *Store) GetPhotoMove(ctx context.Context, photoID string) (LedgerPhoto, bool, error) {
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
	ETag    string
}

// RecordCopies notes, right after copying and before verifying, that
// keymigrate wrote each new key with the given ETag. A later attempt that finds
// different bytes at such a key may overwrite them only if they are this copy
// (its source changed in between); bytes the ledger does not know were written
// by someone else and are never overwritten.
func (s *Store) RecordCopies(ctx context.Context, photoID string, moves []ObjectMove) error {
	if len(moves) == 0 {
		return nil
	}
	var newKeys, kinds, oldKeys, srcETags, etags, cts []string
	var sizes []int64
	for _, m := range moves {
		newKeys, kinds, oldKeys = append(newKeys, m.NewKey), append(kinds, m.Kind), append(oldKeys, m.OldKey)
		srcETags, etags, cts = append(srcETags, m.SourceETag), append(etags, m.ETag), append(cts, m.ContentType)
		sizes = append(sizes, m.Size)
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO keymigrate.object_moves (new_key, photo_id, kind, old_key, size, source_etag, etag, content_type, copied_at)
SELECT nk, $1, k, ok, sz, se, e, ct, now()
  FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[]) AS t(nk, k, ok, sz, se, e, ct)
ON CONFLICT (new_key) DO UPDATE
   SET old_key = EXCLUDED.old_key, size = EXCLUDED.size, source_etag = EXCLUDED.source_etag,
       etag = EXCLUDED.etag, content_type = EXCLUDED.content_type, copied_at = now(), verified_at = NULL
 WHERE keymigrate.object_moves.photo_id = EXCLUDED.photo_id`,
		photoID, newKeys, kinds, oldKeys, sizes, srcETags, etags, cts)
	if err != nil {
		return fmt.Errorf("record %d copies of photo %s: %w", len(moves), photoID, err)
	}
	return nil
}

// CopyRecordOf returns the ledger's record of the object at newKey.
func (s *Store) CopyRecordOf(ctx context.Context, newKey string) (CopyRecord, bool, error) {
	var c CopyRecord
	err := s.pool.QueryRow(ctx, `SELECT photo_id, coalesce(etag, '') FROM keymigrate.object_moves WHERE new_key=$1`, newKey).Scan(&c.PhotoID, &c.ETag)
	if errors.Is(err, pgx.ErrNoRows) {
		return CopyRecord{}, false, nil
	}
	if err != nil {
		return CopyRecord{}, false, fmt.Errorf("read copy record of %s: %w", newKey, err)
	}
	return c, true, nil
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

// Swap points the photo's row at its new keys, if and only if the row still
// holds exactly the keys and owner the worker planned from (compare-and-swap),
// and records the moves in the same transaction. It returns false, changing
// nothing, when the row has changed: the caller re-reads and re-plans.
func (s *Store) Swap(ctx context.Context, in SwapInput) (bool, error) {
	var swapped bool
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
		swapped = true
		// The old keys are those of the first swap: if the row is swapped again
		// (the app wrote a legacy key after migration), rollback must still
		// restore the row as it was before the migration began.
		if _, err := tx.Exec(ctx, `
INSERT INTO keymigrate.photo_moves AS m (photo_id, run_id, state, owner_id, job_id, attempts,
       old_original_key, old_processed_key, old_thumbnail_key,
       new_original_key, new_processed_key, new_thumbnail_key, swapped_at, last_reason, last_error)
VALUES ($1, $2, 'migrated', $3, $4, 1, $5, $6, $7, $8, $9, $10, now(), NULL, NULL)
ON CONFLICT (photo_id) DO UPDATE SET
       run_id = EXCLUDED.run_id, owner_id = EXCLUDED.owner_id, job_id = EXCLUDED.job_id,
       old_original_key  = CASE WHEN m.state IN ('migrated', 'cleaned') THEN m.old_original_key  ELSE EXCLUDED.old_original_key END,
       old_processed_key = CASE WHEN m.state IN ('migrated', 'cleaned') THEN m.old_processed_key ELSE EXCLUDED.old_processed_key END,
       old_thumbnail_key = CASE WHEN m.state IN ('migrated', 'cleaned') THEN m.old_thumbnail_key ELSE EXCLUDED.old_thumbnail_key END,
       state = 'migrated',
       new_original_key = EXCLUDED.new_original_key, new_processed_key = EXCLUDED.new_processed_key,
       new_thumbnail_key = EXCLUDED.new_thumbnail_key, swapped_at = now(), updated_at = now(),
       last_reason = NULL, last_error = NULL`,
			in.PhotoID, in.RunID, in.OwnerID, in.JobID, in.Old.Original, in.Old.Processed, in.Old.Thumbnail,
			in.New.Original, in.New.Processed, in.New.Thumbnail); err != nil {
			return fmt.Errorf("record photo move: %w", err)
		}
		return commitObjects(ctx, tx, in.PhotoID, in.Objects)
	})
	if err != nil {
		return false, fmt.Errorf("swap keys of photo %s: %w", in.PhotoID, err)
	}
	return swapped, nil
}

// CommitDerived records moves that change no row column (animations and
// metadata of a photo whose row was already user-scoped) as committed.
func (s *Store) CommitDerived(ctx context.Context, photoID, runID, ownerID, jobID string, objects []ObjectMove) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
UPDATE keymigrate.photo_moves SET state = CASE WHEN state IN ('in_progress', 'enqueued', 'failed') THEN 'migrated' ELSE state END,
       run_id = coalesce(run_id, $2), job_id = coalesce(job_id, nullif($3, '')), updated_at = now(), last_reason = NULL, last_error = NULL
 WHERE photo_id = $1`, photoID, runID, jobID); err != nil {
			return fmt.Errorf("record photo move: %w", err)
		}
		return commitObjects(ctx, tx, photoID, objects)
	})
	if err != nil {
		return fmt.Errorf("commit moves of photo %s: %w", photoID, err)
	}
	return nil
}

func commitObjects(ctx context.Context, tx pgx.Tx, photoID string, objects []ObjectMove) error {
	if len(objects) == 0 {
		return nil
	}
	cols := make([][]string, 10)
	sizes := make([]int64, 0, len(objects))
	for _, o := range objects {
		for i, v := range []string{o.NewKey, o.Kind, o.OldKey, o.SourceETag, o.ETag, o.ChecksumAlgorithm, o.Checksum, o.VerifyMethod, o.ContentType} {
			cols[i] = append(cols[i], v)
		}
		sizes = append(sizes, o.Size)
	}
	_, err := tx.Exec(ctx, `
INSERT INTO keymigrate.object_moves (new_key, photo_id, kind, old_key, source_etag, etag,
       checksum_algorithm, checksum, verify_method, content_type, size, copied_at, verified_at, committed_at)
SELECT nk, $1, k, ok, se, e, ca, cs, vm, ct, sz, now(), now(), now()
  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[])
       AS t(nk, k, ok, se, e, ca, cs, vm, ct, sz)
ON CONFLICT (new_key) DO UPDATE SET
       kind = EXCLUDED.kind, old_key = EXCLUDED.old_key, size = EXCLUDED.size, source_etag = EXCLUDED.source_etag,
       etag = EXCLUDED.etag, checksum_algorithm = EXCLUDED.checksum_algorithm, checksum = EXCLUDED.checksum,
       verify_method = EXCLUDED.verify_method, content_type = EXCLUDED.content_type,
       copied_at = coalesce(keymigrate.object_moves.copied_at, now()), verified_at = now(),
       committed_at = now(), deleted_at = NULL
 WHERE keymigrate.object_moves.photo_id = EXCLUDED.photo_id`,
		photoID, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], sizes)
	if err != nil {
		return fmt.Errorf("record %d moves: %w", len(objects), err)
	}
	return nil
}

// Archive marks an ownerless photo archived, by compare-and-swap on its keys,
// owner and status, and records its previous status for rollback. It returns
// false when the row changed in the meantime.
func (s *Store) Archive(ctx context.Context, p Photo, runID string) (bool, error) {
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

// RecordFailure appends f to the failure log and, if the photo is known,
// updates its ledger row: failed when permanent, its last error otherwise.
func (s *Store) RecordFailure(ctx context.Context, f Failure) error {
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
