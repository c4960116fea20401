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

// GetControl reads the control record.
func (s *Store) GetControl(ctx context.Context) (Control, error) {
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

// SetPaused pauses or resumes the fleet.
func (s *Store) SetPaused(ctx context.Context, paused bool, by string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.control SET paused = $1, updated_at = now(), updated_by = $2 WHERE id = 1`, paused, by); err != nil {
		return fmt.Errorf("set paused=%t: %w", paused, err)
	}
	return nil
}

// SetRateLimit sets the fleet's rate in photos/s; nil removes the throttle.
func (s *Store) SetRateLimit(ctx context.Context, rate *float64, by string) error {
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
}

// Beat records that a worker is alive and returns how many workers (itself
// included) were seen within window: the throttle's share is rate / live.
func (s *Store) Beat(ctx context.Context, b WorkerBeat, window time.Duration) (int, error) {
	var live int
	err := s.pool.QueryRow(ctx, `
WITH up AS (
  INSERT INTO keymigrate.workers (worker_id, host, pid, paused, in_flight)
  VALUES ($1, $2, $3, $4, $5)
  ON CONFLICT (worker_id) DO UPDATE SET last_seen = now(), paused = EXCLUDED.paused, in_flight = EXCLUDED.in_flight
  RETURNING worker_id)
SELECT 1 + count(*) FROM keymigrate.workers WHERE last_seen > now() - $6::interval AND worker_id <> (SELECT worker_id FROM up)`,
		b.WorkerID, b.Host, b.PID, b.Paused, b.InFlight, window.String()).Scan(&live)
	if err != nil {
		return 0, fmt.Errorf("record worker heartbeat: %w", err)
	}
	return live, nil
}

// Leave removes a stopping worker's heartbeat, so its share of the rate goes
// to the others at once.
func (s *Store) Leave(ctx context.Context, workerID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM keymigrate.workers WHERE worker_id = $1`, workerID); err != nil {
		return fmt.Errorf("remove worker heartbeat: %w", err)
	}
	return nil
}

// LiveWorkers lists the workers seen within window.
func (s *Store) LiveWorkers(ctx context.Context, window time.Duration) ([]WorkerBeat, error) {
	rows, err := s.pool.Query(ctx, `SELECT worker_id, host, pid, paused, in_flight, last_seen FROM keymigrate.workers WHERE last_seen > now() - $1::interval ORDER BY worker_id`, window.String())
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	defer rows.Close()
	var out []WorkerBeat
	for rows.Next() {
		var b WorkerBeat
		if err := rows.Scan(&b.WorkerID, &b.Host, &b.PID, &b.Paused, &b.InFlight, &b.LastSeen); err != nil {
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
	ProbedAt               time.Time
}

// GetS3Capabilities returns the recorded capabilities for bucket; ok is false
// when none were recorded for it.
func (s *Store) GetS3Capabilities(ctx context.Context, bucket string) (S3Capabilities, bool, error) {
	c := S3Capabilities{Bucket: bucket}
	var at *time.Time
	var b *string
	var cc, cd, cbd *bool
	err := s.pool.QueryRow(ctx, `SELECT s3_bucket, s3_conditional_copy, s3_conditional_delete, s3_conditional_batch_delete, s3_probed_at
  FROM keymigrate.control WHERE id = 1`).Scan(&b, &cc, &cd, &cbd, &at)
	if err != nil {
		return c, false, fmt.Errorf("read the S3 capabilities: %w", err)
	}
	if b == nil || *b != bucket || at == nil || cc == nil || cd == nil || cbd == nil {
		return c, false, nil
	}
	c.ConditionalCopy, c.ConditionalDelete, c.ConditionalBatchDelete, c.ProbedAt = *cc, *cd, *cbd, *at
	return c, true, nil
}

// SaveS3Capabilities records what a probe found.
func (s *Store) SaveS3Capabilities(ctx context.Context, c S3Capabilities) error {
	_, err := s.pool.Exec(ctx, `UPDATE keymigrate.control SET s3_bucket = $1, s3_conditional_copy = $2, s3_conditional_delete = $3,
       s3_conditional_batch_delete = $4, s3_probed_at = now() WHERE id = 1`, c.Bucket, c.ConditionalCopy, c.ConditionalDelete, c.ConditionalBatchDelete)
	if err != nil {
		return fmt.Errorf("record the S3 capabilities: %w", err)
	}
	return nil
}
