package ledger

import (
	"context"
	"fmt"
	"slices"
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
	// Superseded: the application wrote the new key itself; no copy of ours.
	Superseded bool
	// CommittedAt is when the move committed (the grace period counts from it).
	CommittedAt *time.Time
	// DeleteIntentAt is set when cleanup decided to delete the legacy object
	// and is about to (DeletedAt follows once the delete is known to be done).
	DeleteIntentAt *time.Time
}

// movedObjectColumns lists the object_moves columns scanMovedObject reads,
// each prefixed with alias (e.g. "o.").
func movedObjectColumns(alias string) string {
	return strings.ReplaceAll(`#photo_id, #kind, #old_key, #new_key, #size, coalesce(#source_etag, ''), coalesce(#etag, ''),
       coalesce(#checksum_algorithm, ''), coalesce(#checksum, ''), #committed_at IS NOT NULL, #deleted_at, #new_deleted_at,
       #superseded_at IS NOT NULL, #committed_at, coalesce(#kind, ''), #delete_intent_at`, "#", alias)
}

func scanMovedObject(r pgx.CollectableRow) (MovedObject, error) {
	var o MovedObject
	err := r.Scan(&o.PhotoID, &o.Kind, &o.OldKey, &o.NewKey, &o.Size, &o.SourceETag, &o.ETag,
		&o.ChecksumAlgorithm, &o.Checksum, &o.Committed, &o.DeletedAt, &o.NewDeletedAt, &o.Superseded, &o.CommittedAt, &o.Kind, &o.DeleteIntentAt)
	return o, err
}

// ObjectMoveListOfPhoto returns a photo's committed object moves.
func (s *Store) ObjectMoveListOfPhoto(ctx context.Context, photoID string) ([]MovedObject, error) {
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

// ObjectMoveListCommitted returns up to limit committed moves after the given new key.
func (s *Store) ObjectMoveListCommitted(ctx context.Context, after string, limit int) ([]MovedObject, error) {
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

// ObjectMoveOldKeysMoved returns which of keys the ledger records as moved (committed).
func (s *Store) ObjectMoveOldKeysMoved(ctx context.Context, keys []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT old_key FROM keymigrate.object_moves WHERE committed_at IS NOT NULL AND job_id = ANY($2) AND old_key = ANY($1)`, keys, jobsOf(keys))
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

// ObjectMoveDeletedLegacyKeys maps each of jobs to the legacy keys of that job cleanup
// deleted (rows that still derive those objects have lost them), from the
// object moves and the audit rows of compacted photos.
func (s *Store) ObjectMoveDeletedLegacyKeys(ctx context.Context, jobs []string) (map[string][]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT job_id, old_key FROM keymigrate.object_moves
 WHERE job_id = ANY($1) AND deleted_at IS NOT NULL ORDER BY job_id, old_key`, jobs)
	if err != nil {
		return nil, fmt.Errorf("look up deleted legacy objects: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var j, k string
		if err := rows.Scan(&j, &k); err != nil {
			return nil, fmt.Errorf("look up deleted legacy objects: %w", err)
		}
		out[j] = append(out[j], k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up deleted legacy objects: %w", err)
	}
	audited, err := s.auditDeletedKeys(ctx, jobs)
	if err != nil {
		return nil, err
	}
	for j, keys := range audited {
		out[j] = append(out[j], keys...)
		slices.Sort(out[j])
		out[j] = slices.Compact(out[j])
	}
	return out, nil
}

// jobsOf returns the distinct jobs of legacy keys: every lookup by legacy key
// goes through object_moves' job_id index (there is no index on old_key but
// cleanup's partial ones), then filters on the key.
func jobsOf(keys []string) []string {
	seen := make(map[string]bool, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if j := JobOf(k); !seen[j] {
			seen[j] = true
			out = append(out, j)
		}
	}
	return out
}
