// Package rescue finds photos whose queue messages were lost (an SQS outage,
// a queue recreated or purged) and enqueues them again, like River's job
// rescuer: a photo the ledger has had enqueued, or in progress without a live
// worker holding it, for longer than a threshold while the main queue holds
// no message at all, has no message anywhere. Duplicates are harmless
// (workers are idempotent); a photo is rescued at most ledger.MaxRescues
// times, after which status shows it for an operator.
package rescue

import (
	"context"
	"fmt"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

// The sweep's production settings, shared by the worker's own sweeper and
// `migratectl sweep` (the CronJob that sweeps while the fleet is at zero).
const (
	// DefaultAfter is how long a photo must have been waiting, and the main
	// queue empty, before its message is presumed lost.
	DefaultAfter = 10 * time.Minute
	// DefaultInterval is how often each worker sweeps.
	DefaultInterval = time.Minute
	// DefaultLimit bounds the photos enqueued again per sweep.
	DefaultLimit = 1000
	// LiveBeats is how many control intervals a worker's heartbeat may be
	// old and the worker still count as alive (holding its photos).
	LiveBeats = 3
)

// LiveWindow is the heartbeat window within which a worker whose control
// interval is controlInterval counts as alive.
func LiveWindow(controlInterval time.Duration) time.Duration {
	return LiveBeats * controlInterval
}

// Options tune a sweep.
type Options struct {
	// After is how long a photo must have been waiting, and the queue empty,
	// before the photo is presumed lost.
	After time.Duration
	// Live is the heartbeat window within which a worker counts as alive.
	Live time.Duration
	// Limit bounds the photos enqueued again per sweep.
	Limit int
}

// Sweep enqueues again the photos whose messages were lost, and returns how
// many. It does nothing while the main queue holds messages (visible, in
// flight or delayed): a photo waiting behind a backlog is not lost.
func Sweep(ctx context.Context, st *ledger.Store, q *queue.Queue, o Options) (int, error) {
	r, err := SweepReport(ctx, st, q, o)
	return r.Enqueued, err
}

// Result says what one sweep saw and did.
type Result struct {
	// Depth is the main queue's depth the sweep read.
	Depth queue.Depth
	// EmptySince is since when the queue has been seen empty (zero while it
	// holds messages); a sweep acts only once it is older than After.
	EmptySince time.Time
	// Enqueued counts the photos enqueued again.
	Enqueued int
}

// SweepReport is Sweep, saying what it saw: the worker's sweeper and
// `migratectl sweep` run this one pass.
func SweepReport(ctx context.Context, st *ledger.Store, q *queue.Queue, o Options) (Result, error) {
	var r Result
	if o.Limit <= 0 {
		o.Limit = DefaultLimit
	}
	if o.Live <= 0 {
		o.Live = 30 * time.Second
	}
	d, err := q.Depth(ctx)
	if err != nil {
		return r, err
	}
	r.Depth = d
	r.EmptySince, err = st.ControlQueueEmpty(ctx, d.Total() == 0)
	if err != nil || r.EmptySince.IsZero() {
		return r, err
	}
	// Approximate counts can read zero for a moment: the queue must have
	// been seen empty for the whole threshold.
	if time.Since(r.EmptySince) < o.After {
		return r, nil
	}
	lost, err := st.PhotoMoveListLost(ctx, o.After, o.Live, o.Limit)
	if err != nil || len(lost) == 0 {
		return r, err
	}
	for start := 0; start < len(lost); start += queue.MaxBatch {
		var bodies []string
		for _, p := range lost[start:min(start+queue.MaxBatch, len(lost))] {
			run := p.RunID
			if run == "" {
				run = "rescue"
			}
			bodies = append(bodies, queue.Encode(queue.Message{PhotoID: p.PhotoID, RunID: run}))
		}
		if err := q.SendBatch(ctx, bodies, time.Minute); err != nil {
			// The photos stay enqueued in the ledger; the next sweep finds
			// them again once the threshold has passed.
			r.Enqueued = start
			return r, fmt.Errorf("enqueue photos whose messages were lost: %w", err)
		}
	}
	r.Enqueued = len(lost)
	return r, nil
}
