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
	if o.Limit <= 0 {
		o.Limit = 1000
	}
	if o.Live <= 0 {
		o.Live = 30 * time.Second
	}
	d, err := q.Depth(ctx)
	if err != nil {
		return 0, err
	}
	since, err := st.ControlQueueEmpty(ctx, d.Total() == 0)
	if err != nil || since.IsZero() {
		return 0, err
	}
	// Approximate counts can read zero for a moment: the queue must have
	// been seen empty for the whole threshold.
	if time.Since(since) < o.After {
		return 0, nil
	}
	lost, err := st.PhotoMoveListLost(ctx, o.After, o.Live, o.Limit)
	if err != nil || len(lost) == 0 {
		return 0, err
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
			return start, fmt.Errorf("enqueue photos whose messages were lost: %w", err)
		}
	}
	return len(lost), nil
}
