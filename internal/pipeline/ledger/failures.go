package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// FailureGroup is the dead-lettered messages of one reason, as the ledger
// recorded them.
type FailureGroup struct {
	Reason   string   `json:"reason"`
	Messages int64    `json:"messages"`
	Photos   int64    `json:"photos"`
	PhotoIDs []string `json:"photo_ids"` // up to the caller's limit
	// MessageIDs lists messages that named no photo (malformed ones).
	MessageIDs []string `json:"message_ids,omitempty"`
	LastError  string   `json:"last_error"`
}

// FailureListOpen groups the permanent failures not yet redriven by reason (all
// reasons if reason is empty), listing up to limit photo ids per group.
func (s *Store) FailureListOpen(ctx context.Context, reason string, limit int) ([]FailureGroup, error) {
	rows, err := s.pool.Query(ctx, `
SELECT reason, count(*), count(DISTINCT photo_id),
       coalesce((array_agg(DISTINCT photo_id) FILTER (WHERE photo_id IS NOT NULL))[1:$2], '{}'),
       coalesce((array_agg(message_id) FILTER (WHERE photo_id IS NULL))[1:$2], '{}'),
       (array_agg(error ORDER BY at DESC))[1]
  FROM keymigrate.failures
 WHERE permanent AND redriven_at IS NULL AND ($1 = '' OR reason = $1)
 GROUP BY reason ORDER BY count(*) DESC, reason`, reason, limit)
	if err != nil {
		return nil, fmt.Errorf("group dead-lettered failures: %w", err)
	}
	defer rows.Close()
	var out []FailureGroup
	for rows.Next() {
		var g FailureGroup
		if err := rows.Scan(&g.Reason, &g.Messages, &g.Photos, &g.PhotoIDs, &g.MessageIDs, &g.LastError); err != nil {
			return nil, fmt.Errorf("group dead-lettered failures: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// FailureExhaustedRetries counts photos that failed transiently on at least
// maxReceive deliveries and never finished: the queue's redrive policy has
// moved their message to the DLQ (without a reason attribute).
func (s *Store) FailureExhaustedRetries(ctx context.Context, maxReceive, limit int) (FailureGroup, error) {
	g := FailureGroup{Reason: "retries_exhausted"}
	err := s.pool.QueryRow(ctx, `
SELECT count(*), coalesce((array_agg(photo_id ORDER BY photo_id))[1:$2], '{}'), coalesce((array_agg(last_error ORDER BY updated_at DESC))[1], '')
  FROM keymigrate.photo_moves
 WHERE state IN ('enqueued', 'in_progress') AND last_reason = 'transient' AND attempts >= $1`, maxReceive, limit).
		Scan(&g.Photos, &g.PhotoIDs, &g.LastError)
	if err != nil {
		return g, fmt.Errorf("count exhausted retries: %w", err)
	}
	g.Messages = g.Photos
	return g, nil
}

// FailureMarkRedriven records that the dead-lettered messages with these original
// message ids went back to the main queue, and that their photos are enqueued
// again.
//
// Only photos that failed before the messages were sent back (before) return
// to enqueued: a worker may already have received a moved message, failed
// the photo again and dead-lettered it, and that photo's message is in the
// DLQ again.
func (s *Store) FailureMarkRedriven(ctx context.Context, messageIDs, photoIDs []string, before time.Time) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE keymigrate.failures SET redriven_at = now() WHERE permanent AND redriven_at IS NULL AND message_id = ANY($1)`, messageIDs); err != nil {
			return fmt.Errorf("mark failures redriven: %w", err)
		}
		if _, err := tx.Exec(ctx, `
UPDATE keymigrate.photo_moves SET state = 'enqueued', enqueued_at = now(), updated_at = now()
 WHERE state = 'failed' AND photo_id = ANY($1) AND (failed_at IS NULL OR failed_at < $2)`, photoIDs, before); err != nil {
			return fmt.Errorf("mark photos enqueued: %w", err)
		}
		return nil
	})
}

// FailureMarkAllRedriven is FailureMarkRedriven for a whole-queue move (StartMessageMoveTask),
// which does not say which messages it moved. It marks what was dead-lettered
// before the task started (before): a photo that workers failed again while
// the task ran has a new message in the DLQ, and its new failure must stay
// listed (dlq list) like its photo stays failed.
func (s *Store) FailureMarkAllRedriven(ctx context.Context, before time.Time) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE keymigrate.failures SET redriven_at = now() WHERE permanent AND redriven_at IS NULL AND at < $1`, before); err != nil {
			return fmt.Errorf("mark failures redriven: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE keymigrate.photo_moves SET state = 'enqueued', enqueued_at = now(), updated_at = now() WHERE state = 'failed' AND (failed_at IS NULL OR failed_at < $1)`, before); err != nil {
			return fmt.Errorf("mark photos enqueued: %w", err)
		}
		return nil
	})
}

// Now is the database's clock, the one failed_at and the other ledger
// timestamps are written with.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := s.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return t, fmt.Errorf("read the database clock: %w", err)
	}
	return t, nil
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
// A photo that is finished (migrated, archived, cleaned, purged) or stopped
// (rolled back by the operator, deleted by the application) keeps its state:
// the failure of an attempt that was in flight when that happened is logged
// only. As 'failed', a `dlq retry` of that message would migrate a photo the
// operator stopped (PhotoMoveBeginAttempt lets a failed photo proceed).
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
       state = CASE WHEN $4 AND state NOT IN ('migrated', 'archived', 'cleaned', 'purged', 'deleted', 'rolled_back') THEN 'failed' ELSE state END,
       failed_at = CASE WHEN $4 THEN now() ELSE failed_at END
 WHERE photo_id = $1`, f.PhotoID, f.Reason, f.Error, f.Permanent)
		return err
	})
	if err != nil {
		return fmt.Errorf("record failure of photo %q (%s): %w", f.PhotoID, f.Reason, err)
	}
	return nil
}

// FailureEntry is one row of the failure log, as recorded.
type FailureEntry struct {
	ID           int64
	At           time.Time
	PhotoID      string // empty when the message named none
	MessageID    string
	Reason       string
	Permanent    bool
	Error        string
	ReceiveCount int
	Redriven     bool
}

// FailureListSince returns the failure log's rows with an id above afterID,
// oldest first, at most limit of them: every failure ever recorded, redriven
// or not (the audit trail a checker pages through).
func (s *Store) FailureListSince(ctx context.Context, afterID int64, limit int) ([]FailureEntry, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id, at, coalesce(photo_id, ''), coalesce(message_id, ''), reason, permanent, error, coalesce(receive_count, 0), redriven_at IS NOT NULL
  FROM keymigrate.failures
 WHERE id > $1
 ORDER BY id
 LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list the failure log: %w", err)
	}
	defer rows.Close()
	var out []FailureEntry
	for rows.Next() {
		var f FailureEntry
		if err := rows.Scan(&f.ID, &f.At, &f.PhotoID, &f.MessageID, &f.Reason, &f.Permanent, &f.Error, &f.ReceiveCount, &f.Redriven); err != nil {
			return nil, fmt.Errorf("list the failure log: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the failure log: %w", err)
	}
	return out, nil
}
