package ledger

import (
	"context"
	"fmt"
	"time"
)

// Control is the fleet-wide control record every worker polls.
type Control struct {
	Paused    bool
	RateLimit *float64 // photos/s for the whole fleet; nil = unthrottled
	UpdatedAt time.Time
	UpdatedBy string
}

// ControlGet reads the control record.
func (s *Store) ControlGet(ctx context.Context) (Control, error) {
	var c Control
	var by *string
	err := s.pool.QueryRow(ctx, `SELECT paused, rate_limit, updated_at, updated_by FROM keymigrate.control WHERE id = 1`).
		Scan(&c.Paused, &c.RateLimit, &c.UpdatedAt, &by)
	if err != nil {
		return Control{}, fmt.Errorf("read control record: %w", err)
	}
	if by != nil {
		c.UpdatedBy = *by
	}
	return c, nil
}

// ControlSetPaused pauses or resumes the fleet.
func (s *Store) ControlSetPaused(ctx context.Context, paused bool, by string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.control SET paused = $1, updated_at = now(), updated_by = $2 WHERE id = 1`, paused, by); err != nil {
		return fmt.Errorf("set paused=%t: %w", paused, err)
	}
	return nil
}

// ControlSetRateLimit sets the fleet's rate in photos/s; nil removes the throttle.
func (s *Store) ControlSetRateLimit(ctx context.Context, rate *float64, by string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.control SET rate_limit = $1, updated_at = now(), updated_by = $2 WHERE id = 1`, rate, by); err != nil {
		return fmt.Errorf("set rate limit: %w", err)
	}
	return nil
}

// WorkerBeat is one worker's heartbeat.
type WorkerBeat struct {
	WorkerID string
	Host     string
	PID      int
	Paused   bool
	InFlight int
	LastSeen time.Time
	// WaitingFor names the dependencies the worker waits for ("" if none).
	WaitingFor string
}

// WorkerHeartbeat records that a worker is alive and returns how many workers (itself
// included) were seen within window: the throttle's share is rate / live.
func (s *Store) WorkerHeartbeat(ctx context.Context, b WorkerBeat, window time.Duration) (int, error) {
	var live int
	err := s.pool.QueryRow(ctx, `
WITH up AS (
  INSERT INTO keymigrate.workers (worker_id, host, pid, paused, in_flight, waiting_for)
  VALUES ($1, $2, $3, $4, $5, nullif($7, ''))
  ON CONFLICT (worker_id) DO UPDATE SET last_seen = now(), paused = EXCLUDED.paused, in_flight = EXCLUDED.in_flight, waiting_for = EXCLUDED.waiting_for
  RETURNING worker_id)
SELECT 1 + count(*) FROM keymigrate.workers WHERE last_seen > now() - $6::interval AND worker_id <> (SELECT worker_id FROM up)`,
		b.WorkerID, b.Host, b.PID, b.Paused, b.InFlight, window.String(), b.WaitingFor).Scan(&live)
	if err != nil {
		return 0, fmt.Errorf("record worker heartbeat: %w", err)
	}
	return live, nil
}

// WorkerLeave removes a stopping worker's heartbeat, so its share of the rate goes
// to the others at once.
func (s *Store) WorkerLeave(ctx context.Context, workerID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM keymigrate.workers WHERE worker_id = $1`, workerID); err != nil {
		return fmt.Errorf("remove worker heartbeat: %w", err)
	}
	return nil
}

// WorkerListLive lists the workers seen within window.
func (s *Store) WorkerListLive(ctx context.Context, window time.Duration) ([]WorkerBeat, error) {
	rows, err := s.pool.Query(ctx, `SELECT worker_id, host, pid, paused, in_flight, last_seen, coalesce(waiting_for, '') FROM keymigrate.workers WHERE last_seen > now() - $1::interval ORDER BY worker_id`, window.String())
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	defer rows.Close()
	var out []WorkerBeat
	for rows.Next() {
		var b WorkerBeat
		if err := rows.Scan(&b.WorkerID, &b.Host, &b.PID, &b.Paused, &b.InFlight, &b.LastSeen, &b.WaitingFor); err != nil {
			return nil, fmt.Errorf("list workers: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// S3Capabilities is what the fleet learned about the S3 server, once: which
// conditions it enforces (see objstore.Capabilities).
type S3Capabilities struct {
	Bucket                 string
	ConditionalCopy        bool
	ConditionalDelete      bool
	ConditionalBatchDelete bool
	ACLs                   bool
	CopyKeepsHeaders       bool
	ProbedAt               time.Time
}

// S3CapabilitiesGet returns the recorded capabilities for bucket; ok is false
// when none were recorded for it.
func (s *Store) S3CapabilitiesGet(ctx context.Context, bucket string) (S3Capabilities, bool, error) {
	c := S3Capabilities{Bucket: bucket}
	var at *time.Time
	var b *string
	var cc, cd, cbd, acls, keeps *bool
	err := s.pool.QueryRow(ctx, `SELECT s3_bucket, s3_conditional_copy, s3_conditional_delete, s3_conditional_batch_delete, s3_acls, s3_copy_keeps_headers, s3_probed_at
  FROM keymigrate.control WHERE id = 1`).Scan(&b, &cc, &cd, &cbd, &acls, &keeps, &at)
	if err != nil {
		return c, false, fmt.Errorf("read the S3 capabilities: %w", err)
	}
	if b == nil || *b != bucket || at == nil || cc == nil || cd == nil || cbd == nil || acls == nil || keeps == nil {
		return c, false, nil
	}
	c.ConditionalCopy, c.ConditionalDelete, c.ConditionalBatchDelete, c.ACLs, c.CopyKeepsHeaders, c.ProbedAt = *cc, *cd, *cbd, *acls, *keeps, *at
	return c, true, nil
}

// S3CapabilitiesSave records what a probe found.
func (s *Store) S3CapabilitiesSave(ctx context.Context, c S3Capabilities) error {
	_, err := s.pool.Exec(ctx, `UPDATE keymigrate.control SET s3_bucket = $1, s3_conditional_copy = $2, s3_conditional_delete = $3,
       s3_conditional_batch_delete = $4, s3_acls = $5, s3_copy_keeps_headers = $6, s3_probed_at = now() WHERE id = 1`,
		c.Bucket, c.ConditionalCopy, c.ConditionalDelete, c.ConditionalBatchDelete, c.ACLs, c.CopyKeepsHeaders)
	if err != nil {
		return fmt.Errorf("record the S3 capabilities: %w", err)
	}
	return nil
}

// ControlQueueEmpty records whether the sweeper found the main queue empty, and
// returns since when it has been (zero when it is not).
func (s *Store) ControlQueueEmpty(ctx context.Context, empty bool) (time.Time, error) {
	var since *time.Time
	err := s.pool.QueryRow(ctx, `UPDATE keymigrate.control
   SET sweep_empty_since = CASE WHEN $1 THEN coalesce(sweep_empty_since, now()) END WHERE id = 1
 RETURNING sweep_empty_since`, empty).Scan(&since)
	if err != nil {
		return time.Time{}, fmt.Errorf("record the queue's emptiness: %w", err)
	}
	if since == nil {
		return time.Time{}, nil
	}
	return *since, nil
}

// LostPhoto is a photo whose message is presumed lost.
type LostPhoto struct {
	PhotoID string
	RunID   string
}

// MaxRescues bounds how often one photo is enqueued again by the sweeper: a
// photo that keeps losing its message (a message that crashes workers, moved
// to the DLQ by the redrive policy) is left for an operator, and shown by
// status.
const MaxRescues = 3
