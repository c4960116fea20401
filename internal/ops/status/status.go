// Package status computes the migration's progress from the ledger, the photos
// table and the queues: counts by state, queue depths, recent rate and an ETA.
package status

import (
	"context"
	"fmt"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

// States lists the ledger states in the order they are shown. "pending" is not
// a ledger state: it counts legacy photos the ledger has not seen yet.
var States = []string{"pending", "enqueued", "in_progress", "migrated", "archived", "failed", "rolled_back", "cleaned"}

// Status is one snapshot.
type Status struct {
	At     time.Time        `json:"at"`
	States map[string]int64 `json:"states"`
	// Total is every photo the migration is about: all the ledger knows plus
	// the pending ones. Done are those in a final state (migrated, archived,
	// cleaned) and Failed those waiting for an operator.
	Total  int64 `json:"total"`
	Done   int64 `json:"done"`
	Failed int64 `json:"failed"`
	// Legacy counts rows that still reference a legacy key (archived aside).
	Legacy int64        `json:"legacy_rows"`
	Queue  *queue.Depth `json:"queue,omitempty"`
	DLQ    *queue.Depth `json:"dlq,omitempty"`
	// QueueError and DLQError say why a queue's figures are missing: status
	// still shows the ledger's view when SQS is unreachable.
	QueueError string `json:"queue_error,omitempty"`
	DLQError   string `json:"dlq_error,omitempty"`
	// Open counts photos the ledger has enqueued or in progress; Held those
	// in progress in a live worker's hands; Unaccounted those the queue
	// cannot be holding a message for (Open minus Held minus the queue's
	// messages, when positive): lost messages, which the workers' sweeper
	// enqueues again once the queue stays empty. Stuck counts photos the
	// sweeper gave up on (their message keeps getting lost).
	Open        int64 `json:"open"`
	Held        int64 `json:"held"`
	Unaccounted int64 `json:"unaccounted"`
	Stuck       int64 `json:"stuck"`
	// UnfinishedRuns are producer runs that have not finished: one that
	// failed (an outage) may have recorded photos as enqueued without
	// sending their messages; rerunning it (producer --run-id) sends them.
	UnfinishedRuns []string `json:"unfinished_runs,omitempty"`
	// NotCarried counts moved objects whose source carried something the
	// copy could not (Object Lock retention, a legal hold, ACL grants): the
	// ledger's object_moves.not_carried says what, per object.
	NotCarried int64 `json:"not_carried"`
	// SinceProgress is how long ago a photo last finished (-1: never).
	SinceProgress time.Duration `json:"since_progress_ns"`
	// Rate is photos finished per second over Window.
	Rate   float64       `json:"rate_per_second"`
	Window time.Duration `json:"window_ns"`
	// ETA is the time left at Rate; zero when done, -1 when unknown.
	ETA time.Duration `json:"eta_ns"`
	// Control is the fleet's pause and throttle state; Workers the workers
	// seen in the last few seconds.
	Control ledger.Control      `json:"control"`
	Workers []ledger.WorkerBeat `json:"workers"`
	// Run is the run the snapshot is scoped to (Source.RunID), if any: its
	// counts are then those of the photos the ledger attributes to it, and
	// the queue depths are still the whole queue's.
	Run *RunInfo `json:"run,omitempty"`
}

// RunInfo is the run a scoped snapshot is about.
type RunInfo struct {
	ID         string            `json:"run_id"`
	Kind       string            `json:"kind"`
	Selection  *ledger.Selection `json:"selection,omitempty"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt *time.Time        `json:"finished_at,omitempty"`
	Counts     ledger.RunCounts  `json:"counts"`
}

// Remaining is photos not yet in a final state.
func (s Status) Remaining() int64 { return s.Total - s.Done }

// Idle reports that nothing is left to do: no legacy photo waits to be
// enqueued and the main queue is empty. When the queue is not known, the
// ledger's enqueued and in-progress photos count instead (they can be stale:
// a photo whose message the redrive policy moved to the DLQ stays in
// progress).
func (s Status) Idle() bool {
	busy := s.States["pending"]
	if s.Queue != nil {
		busy += s.Queue.Total()
	} else {
		busy += s.States["enqueued"] + s.States["in_progress"]
	}
	return busy == 0
}

// Source is what a snapshot reads.
type Source struct {
	Store *ledger.Store
	Queue *queue.Queue // optional
	DLQ   *queue.Queue // optional
	// RunID scopes the counts, the rate and the ETA to one run's photos
	// (optional). Pending is then 0: a run's photos are in the ledger from the
	// moment they are enqueued.
	RunID string
}

// Take reads one snapshot; window is the span the rate is measured over.
func Take(ctx context.Context, src Source, window time.Duration) (Status, error) {
	s := Status{At: time.Now(), States: map[string]int64{}, Window: window, ETA: -1}
	for _, st := range States {
		s.States[st] = 0
	}
	pool := src.Store.Pool()
	if src.RunID != "" {
		run, err := src.Store.RunFind(ctx, src.RunID)
		if err != nil {
			return s, err
		}
		s.Run = &RunInfo{ID: run.ID, Kind: run.Kind, Selection: run.Selection, StartedAt: run.StartedAt, FinishedAt: run.FinishedAt, Counts: run.Counts}
	}
	rows, err := pool.Query(ctx, `SELECT state, count(*) FROM keymigrate.photo_moves WHERE $1 = '' OR run_id = $1 GROUP BY state`, src.RunID)
	if err != nil {
		return s, fmt.Errorf("count ledger states: %w", err)
	}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			rows.Close()
			return s, fmt.Errorf("count ledger states: %w", err)
		}
		s.States[st] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("count ledger states: %w", err)
	}
	var pending int64
	// Pending: legacy rows the ledger has not recorded (not yet enqueued).
	if src.RunID != "" {
		s.Legacy, err = src.Store.RunLegacyCount(ctx, src.RunID)
	} else {
		err = pool.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE m.photo_id IS NULL), count(*)
  FROM photos p LEFT JOIN keymigrate.photo_moves m ON m.photo_id = p.id::text
 WHERE p.status IS DISTINCT FROM 'archived'
   AND (p.original_key NOT LIKE 'users/%' OR p.processed_key NOT LIKE 'users/%' OR p.thumbnail_key NOT LIKE 'users/%')`).
			Scan(&pending, &s.Legacy)
	}
	if err != nil {
		return s, fmt.Errorf("count pending photos: %w", err)
	}
	s.States["pending"] = pending
	// The rate is measured over the window, or over the time since the first
	// photo in it finished if that is shorter, so that a run that started
	// seconds ago is not diluted over the whole window.
	var recent int64
	var span float64
	if err := pool.QueryRow(ctx, `
SELECT count(*), coalesce(extract(epoch FROM now() - min(greatest(swapped_at, archived_at))), 0)
  FROM keymigrate.photo_moves
 WHERE greatest(swapped_at, archived_at) > now() - $1::interval AND ($2 = '' OR run_id = $2)`, window.String(), src.RunID).Scan(&recent, &span); err != nil {
		return s, fmt.Errorf("measure rate: %w", err)
	}
	for st, n := range s.States {
		s.Total += n
		switch st {
		case "migrated", "archived", "cleaned":
			s.Done += n
		case "failed":
			s.Failed += n
		}
	}
	if span = min(max(span, 1), window.Seconds()); window > 0 {
		s.Rate = float64(recent) / span
	}
	switch left := s.Remaining() - s.Failed; {
	case left <= 0:
		s.ETA = 0
	case s.Rate > 0:
		s.ETA = time.Duration(float64(left) / s.Rate * float64(time.Second))
	}
	if s.Control, err = src.Store.ControlGet(ctx); err != nil {
		return s, err
	}
	if s.Workers, err = src.Store.WorkerListLive(ctx, 10*time.Second); err != nil {
		return s, err
	}
	var since *float64
	if err := pool.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE state IN ('enqueued', 'in_progress')),
       count(*) FILTER (WHERE state = 'in_progress' AND EXISTS (
           SELECT 1 FROM keymigrate.workers w WHERE w.worker_id = m.worker_id AND w.last_seen > now() - interval '10 seconds')),
       count(*) FILTER (WHERE state IN ('enqueued', 'in_progress') AND rescued >= $1),
       extract(epoch FROM now() - max(greatest(swapped_at, archived_at, cleaned_at, failed_at)))
  FROM keymigrate.photo_moves m`, ledger.MaxRescues).Scan(&s.Open, &s.Held, &s.Stuck, &since); err != nil {
		return s, fmt.Errorf("count open photos: %w", err)
	}
	if s.UnfinishedRuns, err = src.Store.RunListUnfinishedProducer(ctx); err != nil {
		return s, err
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM keymigrate.object_moves WHERE not_carried IS NOT NULL AND committed_at IS NOT NULL`).Scan(&s.NotCarried); err != nil {
		return s, fmt.Errorf("count objects with attributes not carried: %w", err)
	}
	s.SinceProgress = -1
	if since != nil {
		s.SinceProgress = time.Duration(*since * float64(time.Second))
	}
	// The queues are read last and their failure is not the snapshot's: the
	// ledger's view is worth showing when SQS is unreachable.
	if src.Queue != nil {
		if d, err := src.Queue.Depth(ctx); err != nil {
			s.QueueError = err.Error()
		} else {
			s.Queue = &d
			s.Unaccounted = max(s.Open-s.Held-d.Total(), 0)
		}
	}
	if src.DLQ != nil {
		if d, err := src.DLQ.Depth(ctx); err != nil {
			s.DLQError = err.Error()
		} else {
			s.DLQ = &d
		}
	}
	return s, nil
}
