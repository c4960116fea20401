package ledger

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReportPhoto is one photo of a run as the audit report shows it: its ledger
// row and every object the ledger recorded for it.
type ReportPhoto struct {
	PhotoID      string
	RunID        string
	State        string
	OwnerID      *string
	Attempts     int
	LastReason   *string
	LastError    *string
	Old          Keys // the row's keys before the swap or the archive (empty when never swapped)
	OldStatus    *string
	EnqueuedAt   *time.Time
	StartedAt    *time.Time
	SwappedAt    *time.Time
	ArchivedAt   *time.Time
	FailedAt     *time.Time
	RolledBackAt *time.Time
	CleanedAt    *time.Time
	Objects      []ReportObject
}

// ReportObject is one object move of a photo.
type ReportObject struct {
	Kind              string
	OldKey            string
	NewKey            string
	Size              int64
	SourceETag        string
	ETag              string
	ChecksumAlgorithm string
	Checksum          string
	VerifyMethod      string
	CopiedAt          *time.Time
	VerifiedAt        *time.Time
	CommittedAt       *time.Time
	LegacyDeletedAt   *time.Time // cleanup deleted the legacy object
	NewDeletedAt      *time.Time // rollback deleted the new copy
}

// RunReportPage returns up to limit photos of run after the given photo id,
// in photo id order, each with its object moves: two statements per page, so
// a report of any size is written with one page in memory.
func (s *Store) RunReportPage(ctx context.Context, runID, after string, limit int) ([]ReportPhoto, error) {
	rows, err := s.pool.Query(ctx, `
SELECT photo_id, coalesce(run_id, ''), state, owner_id, attempts, last_reason, last_error,
       old_original_key, old_processed_key, old_thumbnail_key, old_status,
       enqueued_at, started_at, swapped_at, archived_at, failed_at, rolled_back_at, cleaned_at
  FROM keymigrate.photo_moves
 WHERE run_id = $1 AND photo_id > $2
 ORDER BY photo_id LIMIT $3`, runID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read report page of run %s: %w", runID, err)
	}
	photos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ReportPhoto, error) {
		var p ReportPhoto
		var oldOrig *string
		err := r.Scan(&p.PhotoID, &p.RunID, &p.State, &p.OwnerID, &p.Attempts, &p.LastReason, &p.LastError,
			&oldOrig, &p.Old.Processed, &p.Old.Thumbnail, &p.OldStatus,
			&p.EnqueuedAt, &p.StartedAt, &p.SwappedAt, &p.ArchivedAt, &p.FailedAt, &p.RolledBackAt, &p.CleanedAt)
		if oldOrig != nil {
			p.Old.Original = *oldOrig
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("read report page of run %s: %w", runID, err)
	}
	if len(photos) == 0 {
		return nil, nil
	}
	ids := make([]string, len(photos))
	index := make(map[string]int, len(photos))
	for i, p := range photos {
		ids[i] = p.PhotoID
		index[p.PhotoID] = i
	}
	orows, err := s.pool.Query(ctx, `
SELECT photo_id, kind, old_key, new_key, size, coalesce(source_etag, ''), coalesce(etag, ''),
       coalesce(checksum_algorithm, ''), coalesce(checksum, ''), coalesce(verify_method, ''),
       copied_at, verified_at, committed_at, deleted_at, new_deleted_at
  FROM keymigrate.object_moves WHERE photo_id = ANY($1)
 ORDER BY photo_id, new_key`, ids)
	if err != nil {
		return nil, fmt.Errorf("read object moves of run %s: %w", runID, err)
	}
	defer orows.Close()
	for orows.Next() {
		var id string
		var o ReportObject
		if err := orows.Scan(&id, &o.Kind, &o.OldKey, &o.NewKey, &o.Size, &o.SourceETag, &o.ETag,
			&o.ChecksumAlgorithm, &o.Checksum, &o.VerifyMethod, &o.CopiedAt, &o.VerifiedAt, &o.CommittedAt, &o.LegacyDeletedAt, &o.NewDeletedAt); err != nil {
			return nil, fmt.Errorf("read object moves of run %s: %w", runID, err)
		}
		i := index[id]
		photos[i].Objects = append(photos[i].Objects, o)
	}
	if err := orows.Err(); err != nil {
		return nil, fmt.Errorf("read object moves of run %s: %w", runID, err)
	}
	// Compacted photos keep their moves in audit rows.
	audit, err := s.auditObjects(ctx, ids)
	if err != nil {
		return nil, err
	}
	for id, objs := range audit {
		i := index[id]
		// Compaction leaves the old key columns the audit rows hold to them.
		old := &photos[i].Old
		for _, a := range objs {
			if a.CommittedAt == nil {
				continue
			}
			switch columnOfKind(a.Kind) {
			case 0:
				if old.Original == "" {
					old.Original = a.OldKey
				}
			case 1:
				if old.Processed == nil {
					old.Processed = &a.OldKey
				}
			case 2:
				if old.Thumbnail == nil {
					old.Thumbnail = &a.OldKey
				}
			}
		}
		for _, a := range objs {
			photos[i].Objects = append(photos[i].Objects, ReportObject{Kind: a.Kind, OldKey: a.OldKey, NewKey: a.NewKey, Size: a.Size,
				SourceETag: a.SourceETag, ETag: a.ETag, ChecksumAlgorithm: a.ChecksumAlgorithm, Checksum: a.Checksum, VerifyMethod: a.VerifyMethod,
				CopiedAt: a.CopiedAt, VerifiedAt: a.VerifiedAt, CommittedAt: a.CommittedAt, LegacyDeletedAt: a.DeletedAt})
		}
		slices.SortFunc(photos[i].Objects, func(a, b ReportObject) int { return strings.Compare(a.NewKey, b.NewKey) })
	}
	return photos, nil
}
