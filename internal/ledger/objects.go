package ledger

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// MovedObject is a recorded object move as rollback, cleanup and verify read
// it back: the move itself and where it stands.
type MovedObject struct {
	PhotoID string
	ObjectMove
	Committed    bool
	DeletedAt    *time.Time // legacy object deleted by cleanup
	NewDeletedAt *time.Time // new copy deleted by rollback
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
