package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Assignment is an operator's decision, recorded in the ledger, to give an
// archived (ownerless) photo an owner so that it is migrated.
type Assignment struct {
	PhotoID    string     `json:"photo_id"`
	OwnerID    string     `json:"owner_id"`
	RunID      string     `json:"run_id"`
	OldStatus  *string    `json:"old_status,omitempty"`
	AssignedAt time.Time  `json:"assigned_at"`
	AssignedBy string     `json:"assigned_by"`
	Source     string     `json:"source"`
	EnqueuedAt *time.Time `json:"enqueued_at,omitempty"`
}

// AssignCandidate is what an assignment decides from: the photos row, its
// ledger row and any earlier assignment.
type AssignCandidate struct {
	Photo Photo
	// LedgerState and OldStatus come from the photo's ledger row (HasLedger).
	HasLedger   bool
	LedgerState State
	OldStatus   *string
	// Assignment is the earlier assignment of this photo, if any.
	Assignment *Assignment
}

// PhotoAssignCandidates reads the candidates among ids; ids without a photos row
// are absent from the map.
func (s *Store) PhotoAssignCandidates(ctx context.Context, ids []string) (map[string]AssignCandidate, error) {
	idType, err := s.PhotoIDType(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `
SELECT p.id::text, p.owner_id::text, p.status::text, p.original_key, p.processed_key, p.thumbnail_key,
       m.photo_id IS NOT NULL, coalesce(m.state, ''), m.old_status,
       a.photo_id IS NOT NULL, coalesce(a.owner_id, ''), coalesce(a.run_id, ''), a.old_status, coalesce(a.assigned_at, now()),
       coalesce(a.assigned_by, ''), coalesce(a.source, ''), a.enqueued_at
  FROM photos p
  LEFT JOIN keymigrate.photo_moves m ON m.photo_id = p.id::text
  LEFT JOIN keymigrate.assignments a ON a.photo_id = p.id::text
 WHERE p.id = ANY($1::text[]::`+idType+`[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("read %d photos to assign: %w", len(ids), err)
	}
	defer rows.Close()
	out := make(map[string]AssignCandidate, len(ids))
	for rows.Next() {
		var c AssignCandidate
		var hasA bool
		var a Assignment
		if err := rows.Scan(&c.Photo.ID, &c.Photo.OwnerID, &c.Photo.Status, &c.Photo.Original, &c.Photo.Processed, &c.Photo.Thumbnail,
			&c.HasLedger, &c.LedgerState, &c.OldStatus,
			&hasA, &a.OwnerID, &a.RunID, &a.OldStatus, &a.AssignedAt, &a.AssignedBy, &a.Source, &a.EnqueuedAt); err != nil {
			return nil, fmt.Errorf("read photos to assign: %w", err)
		}
		if hasA {
			a.PhotoID = c.Photo.ID
			c.Assignment = &a
		}
		out[c.Photo.ID] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read photos to assign: %w", err)
	}
	return out, nil
}

// PhotoOwnersWithPhotos returns those of owners that own at least one photo. The
// owners must fit photos.owner_id's type (IDFitsType).
func (s *Store) PhotoOwnersWithPhotos(ctx context.Context, owners []string) (map[string]bool, error) {
	typ, err := s.PhotoOwnerIDType(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT owner_id::text FROM photos WHERE owner_id = ANY($1::text[]::`+typ+`[])`, owners)
	if err != nil {
		return nil, fmt.Errorf("look up %d owners: %w", len(owners), err)
	}
	known, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up %d owners: %w", len(owners), err)
	}
	m := make(map[string]bool, len(known))
	for _, o := range known {
		m[o] = true
	}
	return m, nil
}

// AssignInput un-archives one photo for an owner.
type AssignInput struct {
	PhotoID string
	OwnerID string
	RunID   string
	By      string
	Source  string
	// OldStatus is the status the photo had before it was archived (from its
	// ledger row); Keys are its key columns as read when the decision was made.
	OldStatus *string
	Keys      Keys
}

// PhotoAssignOwner un-archives a photo for an owner by compare-and-swap on the row as
// it was read (archived, ownerless, the same keys): owner_id is set and the
// status before archiving is restored, the assignment is recorded, and the
// photo's ledger row becomes enqueued in the assignment's run, all in one
// transaction. It returns false, changing nothing, when the row changed since
// it was read.
func (s *Store) PhotoAssignOwner(ctx context.Context, in AssignInput) (bool, error) {
	var done bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
UPDATE photos SET owner_id = $2, status = $3
 WHERE id = $1 AND status = 'archived' AND owner_id IS NULL
   AND original_key = $4 AND processed_key IS NOT DISTINCT FROM $5 AND thumbnail_key IS NOT DISTINCT FROM $6`,
			in.PhotoID, in.OwnerID, in.OldStatus, in.Keys.Original, in.Keys.Processed, in.Keys.Thumbnail)
		if err != nil {
			return fmt.Errorf("update photos row: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		done = true
		if _, err := tx.Exec(ctx, `
INSERT INTO keymigrate.assignments (photo_id, owner_id, run_id, old_status, assigned_by, source)
VALUES ($1, $2, $3, $4, $5, $6)`, in.PhotoID, in.OwnerID, in.RunID, in.OldStatus, in.By, in.Source); err != nil {
			return fmt.Errorf("record assignment: %w", err)
		}
		_, err = tx.Exec(ctx, `
UPDATE keymigrate.photo_moves
   SET state = 'enqueued', run_id = $2, owner_id = $3, enqueued_at = now(), updated_at = now(), last_reason = NULL, last_error = NULL
 WHERE photo_id = $1`, in.PhotoID, in.RunID, in.OwnerID)
		if err != nil {
			return fmt.Errorf("record photo as enqueued: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("assign photo %s to owner %s: %w", in.PhotoID, in.OwnerID, err)
	}
	return done, nil
}

// AssignmentMarkEnqueued records that the messages of these assigned photos
// were sent.
func (s *Store) AssignmentMarkEnqueued(ctx context.Context, photoIDs []string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.assignments SET enqueued_at = now() WHERE photo_id = ANY($1)`, photoIDs); err != nil {
		return fmt.Errorf("record %d assignments as enqueued: %w", len(photoIDs), err)
	}
	return nil
}
