package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PhotoHistory is a photo's ledger row in full, for an operator looking at
// one photo (`migratectl photo`): its state, attempts, last failure, the keys
// before and after the swap, and when each step happened.
type PhotoHistory struct {
	PhotoID, RunID, State string
	OwnerID, JobID        *string
	Attempts, Rescued     int
	WorkerID              *string
	LastReason, LastError *string
	Old, New              Keys
	Enqueued, Started     *time.Time
	Swapped, Archived     *time.Time
	Failed, RolledBack    *time.Time
	Cleaned, Purged       *time.Time
	Deleted, Compacted    *time.Time
	Updated               time.Time
}

// PhotoMoveHistory reads a photo's whole ledger row; ok is false if the
// ledger never saw the photo.
func (s *Store) PhotoMoveHistory(ctx context.Context, photoID string) (PhotoHistory, bool, error) {
	var h PhotoHistory
	var oldOriginal, newOriginal *string
	err := s.pool.QueryRow(ctx, `
SELECT photo_id, coalesce(run_id, ''), state, owner_id, job_id, attempts, rescued, worker_id, last_reason, last_error,
       old_original_key, old_processed_key, old_thumbnail_key, new_original_key, new_processed_key, new_thumbnail_key,
       enqueued_at, started_at, swapped_at, archived_at, failed_at, rolled_back_at, cleaned_at, purged_at, deleted_at,
       compacted_at, updated_at
  FROM keymigrate.photo_moves WHERE photo_id = $1`, photoID).Scan(
		&h.PhotoID, &h.RunID, &h.State, &h.OwnerID, &h.JobID, &h.Attempts, &h.Rescued, &h.WorkerID, &h.LastReason, &h.LastError,
		&oldOriginal, &h.Old.Processed, &h.Old.Thumbnail, &newOriginal, &h.New.Processed, &h.New.Thumbnail,
		&h.Enqueued, &h.Started, &h.Swapped, &h.Archived, &h.Failed, &h.RolledBack, &h.Cleaned, &h.Purged, &h.Deleted,
		&h.Compacted, &h.Updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return PhotoHistory{}, false, nil
	}
	if err != nil {
		return PhotoHistory{}, false, fmt.Errorf("read the ledger row of photo %s: %w", photoID, err)
	}
	if oldOriginal != nil {
		h.Old.Original = *oldOriginal
	}
	if newOriginal != nil {
		h.New.Original = *newOriginal
	}
	return h, true, nil
}

// FailureRecorded is one entry of the failure log.
type FailureRecorded struct {
	At           time.Time
	RunID        string
	MessageID    string
	Reason       string
	Permanent    bool
	Error        string
	ReceiveCount int
}

// FailureListOfPhoto returns the newest limit failures recorded for a photo,
// newest first.
func (s *Store) FailureListOfPhoto(ctx context.Context, photoID string, limit int) ([]FailureRecorded, error) {
	rows, err := s.pool.Query(ctx, `
SELECT at, coalesce(run_id, ''), coalesce(message_id, ''), reason, permanent, error, coalesce(receive_count, 0)
  FROM keymigrate.failures WHERE photo_id = $1 ORDER BY id DESC LIMIT $2`, photoID, limit)
	if err != nil {
		return nil, fmt.Errorf("read the failures of photo %s: %w", photoID, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[FailureRecorded])
	if err != nil {
		return nil, fmt.Errorf("read the failures of photo %s: %w", photoID, err)
	}
	return out, nil
}
