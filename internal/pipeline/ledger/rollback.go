package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PhotoMove is a photo's ledger row as rollback needs it.
type PhotoMove struct {
	PhotoID   string
	RunID     string
	State     string
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
		case "archived":
			sql = `UPDATE photos SET status = $2 WHERE id = $1 AND status = 'archived' AND owner_id IS NULL
			        AND original_key = $3 AND processed_key IS NOT DISTINCT FROM $4 AND thumbnail_key IS NOT DISTINCT FROM $5`
			args = []any{m.PhotoID, m.OldStatus, m.Old.Original, m.Old.Processed, m.Old.Thumbnail}
		case "migrated", "cleaned":
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

// ObjectMoveMarkRestored records that a legacy object deleted by cleanup was copied back
// from its new key.
func (s *Store) ObjectMoveMarkRestored(ctx context.Context, newKey string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves SET deleted_at = NULL, delete_intent_at = NULL, delete_etag = NULL, restored_at = now() WHERE new_key = $1`, newKey); err != nil {
		return fmt.Errorf("record restore of %s: %w", newKey, err)
	}
	return nil
}

// ObjectMoveMarkNewDeleted records that rollback deleted these new copies.
func (s *Store) ObjectMoveMarkNewDeleted(ctx context.Context, newKeys []string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves SET new_deleted_at = now(), committed_at = NULL WHERE new_key = ANY($1)`, newKeys); err != nil {
		return fmt.Errorf("record deletion of %d new copies: %w", len(newKeys), err)
	}
	return nil
}
