package ledger

import (
	"context"
	"fmt"
	"strings"
	"time"

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

// MovedObject is an object move as rollback, cleanup and verify need it.
type MovedObject struct {
	PhotoID           string
	Kind              string
	OldKey            string
	NewKey            string
	Size              int64
	SourceETag        string
	ETag              string
	ChecksumAlgorithm string
	Checksum          string
	Committed         bool
	DeletedAt         *time.Time // legacy object deleted by cleanup
	NewDeletedAt      *time.Time // new copy deleted by rollback
}

// RollbackCandidates returns up to limit photos, after the given id, that a
// rollback can undo (migrated, cleaned or archived), optionally only one photo
// or one run.
func (s *Store) RollbackCandidates(ctx context.Context, photoID, runID, after string, limit int) ([]PhotoMove, error) {
	rows, err := s.pool.Query(ctx, `
SELECT photo_id, coalesce(run_id, ''), state, owner_id, old_original_key, old_processed_key, old_thumbnail_key, old_status,
       new_original_key, new_processed_key, new_thumbnail_key
  FROM keymigrate.photo_moves
 WHERE state IN ('migrated', 'cleaned', 'archived') AND photo_id > $1
   AND ($2 = '' OR photo_id = $2) AND ($3 = '' OR run_id = $3)
 ORDER BY photo_id LIMIT $4`, after, photoID, runID, limit)
	if err != nil {
		return nil, fmt.Errorf("read rollback candidates: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PhotoMove, error) {
		var m PhotoMove
		var oldOrig, newOrig *string
		err := r.Scan(&m.PhotoID, &m.RunID, &m.State, &m.OwnerID, &oldOrig, &m.Old.Processed, &m.Old.Thumbnail, &m.OldStatus,
			&newOrig, &m.New.Processed, &m.New.Thumbnail)
		if oldOrig != nil {
			m.Old.Original = *oldOrig
		}
		if newOrig != nil {
			m.New.Original = *newOrig
		}
		return m, err
	})
}

// movedObjectColumns lists the object_moves columns scanMovedObject reads,
// each prefixed with alias (e.g. "o.").
func movedObjectColumns(alias string) string {
	return strings.ReplaceAll(`#photo_id, #kind, #old_key, #new_key, #size, coalesce(#source_etag, ''), coalesce(#etag, ''),
       coalesce(#checksum_algorithm, ''), coalesce(#checksum, ''), #committed_at IS NOT NULL, #deleted_at, #new_deleted_at`, "#", alias)
}

func scanMovedObject(r pgx.CollectableRow) (MovedObject, error) {
	var o MovedObject
	err := r.Scan(&o.PhotoID, &o.Kind, &o.OldKey, &o.NewKey, &o.Size, &o.SourceETag, &o.ETag,
		&o.ChecksumAlgorithm, &o.Checksum, &o.Committed, &o.DeletedAt, &o.NewDeletedAt)
	return o, err
}

// ObjectsOf returns a photo's committed object moves.
func (s *Store) ObjectsOf(ctx context.Context, photoID string) ([]MovedObject, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+movedObjectColumns("")+` FROM keymigrate.object_moves WHERE photo_id = $1 AND committed_at IS NOT NULL ORDER BY new_key`, photoID)
	if err != nil {
		return nil, fmt.Errorf("read moves of photo %s: %w", photoID, err)
	}
	objs, err := pgx.CollectRows(rows, scanMovedObject)
	if err != nil {
		return nil, fmt.Errorf("read moves of photo %s: %w", photoID, err)
	}
	return objs, nil
}

// RollbackRow puts a photo's row back as the ledger recorded it before the
// migration, by compare-and-swap: a migrated row must still hold exactly the
// new keys, an archived row must still be archived and ownerless with its old
// keys. It returns false, changing nothing, if the app changed the row since.
func (s *Store) RollbackRow(ctx context.Context, m PhotoMove) (bool, error) {
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
		done = true
		_, err = tx.Exec(ctx, `UPDATE keymigrate.photo_moves SET state = 'rolled_back', rolled_back_at = now(), updated_at = now() WHERE photo_id = $1`, m.PhotoID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("roll back photo %s: %w", m.PhotoID, err)
	}
	return done, nil
}

// MarkRestored records that a legacy object deleted by cleanup was copied back
// from its new key.
func (s *Store) MarkRestored(ctx context.Context, newKey string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves SET deleted_at = NULL, restored_at = now() WHERE new_key = $1`, newKey); err != nil {
		return fmt.Errorf("record restore of %s: %w", newKey, err)
	}
	return nil
}

// MarkNewDeleted records that rollback deleted these new copies.
func (s *Store) MarkNewDeleted(ctx context.Context, newKeys []string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves SET new_deleted_at = now(), committed_at = NULL WHERE new_key = ANY($1)`, newKeys); err != nil {
		return fmt.Errorf("record deletion of %d new copies: %w", len(newKeys), err)
	}
	return nil
}

// CleanupCandidates returns up to limit committed moves, after the given new
// key, whose legacy object is not deleted yet and whose photo was swapped at
// least grace ago and is still migrated.
func (s *Store) CleanupCandidates(ctx context.Context, grace time.Duration, after string, limit int) ([]MovedObject, error) {
	rows, err := s.pool.Query(ctx, `
SELECT `+movedObjectColumns("o.")+`
  FROM keymigrate.object_moves o JOIN keymigrate.photo_moves p ON p.photo_id = o.photo_id
 WHERE o.committed_at IS NOT NULL AND o.deleted_at IS NULL AND o.new_deleted_at IS NULL
   AND p.state = 'migrated' AND p.swapped_at <= now() - $1::interval AND o.new_key > $2
 ORDER BY o.new_key LIMIT $3`, grace.String(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("read cleanup candidates: %w", err)
	}
	objs, err := pgx.CollectRows(rows, scanMovedObject)
	if err != nil {
		return nil, fmt.Errorf("read cleanup candidates: %w", err)
	}
	return objs, nil
}

// MarkDeleted records that cleanup deleted these legacy objects (by new key),
// and marks photos whose legacy objects are all gone as cleaned.
func (s *Store) MarkDeleted(ctx context.Context, newKeys []string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE keymigrate.object_moves SET deleted_at = now() WHERE new_key = ANY($1) AND deleted_at IS NULL`, newKeys); err != nil {
			return fmt.Errorf("record deletions: %w", err)
		}
		_, err := tx.Exec(ctx, `
UPDATE keymigrate.photo_moves p SET state = 'cleaned', cleaned_at = now(), updated_at = now()
 WHERE p.state = 'migrated'
   AND p.photo_id IN (SELECT photo_id FROM keymigrate.object_moves WHERE new_key = ANY($1))
   AND NOT EXISTS (SELECT 1 FROM keymigrate.object_moves o WHERE o.photo_id = p.photo_id AND o.committed_at IS NOT NULL AND o.deleted_at IS NULL)`, newKeys)
		if err != nil {
			return fmt.Errorf("mark photos cleaned: %w", err)
		}
		return nil
	})
}

// CommittedObjects returns up to limit committed moves after the given new key.
func (s *Store) CommittedObjects(ctx context.Context, after string, limit int) ([]MovedObject, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+movedObjectColumns("")+` FROM keymigrate.object_moves
 WHERE committed_at IS NOT NULL AND new_key > $1 ORDER BY new_key LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read moved objects: %w", err)
	}
	objs, err := pgx.CollectRows(rows, scanMovedObject)
	if err != nil {
		return nil, fmt.Errorf("read moved objects: %w", err)
	}
	return objs, nil
}

// MovedOldKeys returns which of keys the ledger records as moved (committed).
func (s *Store) MovedOldKeys(ctx context.Context, keys []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT old_key FROM keymigrate.object_moves WHERE committed_at IS NOT NULL AND old_key = ANY($1)`, keys)
	if err != nil {
		return nil, fmt.Errorf("look up moved keys: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out[k] = true
	}
	return out, rows.Err()
}

// MigratedJobs maps the given job ids to the photo migrated from each.
func (s *Store) MigratedJobs(ctx context.Context, jobs []string) (map[string]string, error) {
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

// LegacyRowKeys calls fn for every photos row that still references a legacy
// key (archived rows included), a page at a time.
func (s *Store) LegacyRowKeys(ctx context.Context, fn func(p Photo) error) error {
	after := ""
	for {
		var rows pgx.Rows
		var err error
		const where = `(original_key NOT LIKE 'users/%' OR processed_key NOT LIKE 'users/%' OR thumbnail_key NOT LIKE 'users/%')`
		if after == "" {
			rows, err = s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE `+where+` ORDER BY id LIMIT 1000`)
		} else {
			rows, err = s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE id > $1 AND `+where+` ORDER BY id LIMIT 1000`, after)
		}
		if err != nil {
			return fmt.Errorf("scan legacy rows: %w", err)
		}
		photos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Photo, error) { return scanPhoto(r) })
		if err != nil {
			return fmt.Errorf("scan legacy rows: %w", err)
		}
		if len(photos) == 0 {
			return nil
		}
		for _, p := range photos {
			if err := fn(p); err != nil {
				return err
			}
		}
		after = photos[len(photos)-1].ID
	}
}
