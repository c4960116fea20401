// Package dlq reviews and redrives the dead-letter queue. Reviewing reads the
// ledger, never the queue, so that looking does not consume messages or count
// as a delivery. Redriving moves messages back to the main queue: all at once
// with SQS's StartMessageMoveTask where the server has it and no filter is
// asked for, otherwise one batch at a time (receive, send, delete), so an
// interruption can duplicate a message (harmless: workers are idempotent) but
// never lose one.
package dlq

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/pipeline/failure"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

// ReasonUnknown labels DLQ messages without a reason attribute: those the
// queue's redrive policy moved after too many deliveries. It is
// failure.RetriesExhausted, spelled as the ledger and the queue's attributes
// keep reasons.
const ReasonUnknown = string(failure.RetriesExhausted)

// Listing is the DLQ's content as the ledger knows it, next to the depth SQS
// reports.
type Listing struct {
	Groups []ledger.FailureGroup `json:"groups"`
	Depth  queue.Depth           `json:"dlq_depth"`
	// DepthError says why Depth is missing: the listing comes from the
	// ledger, and is still given when SQS is unreachable.
	DepthError string `json:"dlq_depth_error,omitempty"`
	// Accounted is the number of messages the groups explain.
	Accounted int64 `json:"accounted"`
}

// List groups the dead-lettered photos by reason.
func List(ctx context.Context, st *ledger.Store, dlq *queue.Queue, reason string, maxReceive, limit int) (Listing, error) {
	var l Listing
	groups, err := st.FailureListOpen(ctx, reason, limit)
	if err != nil {
		return l, err
	}
	if reason == "" || reason == ReasonUnknown {
		ex, err := st.FailureExhaustedRetries(ctx, maxReceive, limit)
		if err != nil {
			return l, err
		}
		if ex.Photos > 0 {
			groups = append(groups, ex)
		}
	}
	for _, g := range groups {
		l.Accounted += g.Messages
	}
	l.Groups = groups
	if dlq != nil {
		if l.Depth, err = dlq.Depth(ctx); err != nil {
			l.DepthError = err.Error()
		}
	}
	return l, nil
}

// Options select what to redrive.
type Options struct {
	Reason string // only messages dead-lettered for this reason ("" = all)
	Max    int    // at most this many messages (0 = all)
	// Hold is how long messages that do not match stay hidden while the
	// redrive runs (they are released at the end, or reappear after Hold if
	// the redrive is interrupted).
	Hold time.Duration
}

// hooks are the points where the package's tests step into a redrive
// (export_test.go); Redrive leaves them nil.
type hooks struct {
	// afterBatch runs after each moved batch (tests interrupt here).
	afterBatch func(moved int)
	// afterSend runs after a batch is in the main queue and before the
	// ledger records the move (tests put a worker here).
	afterSend func()
}

// Result says what a redrive did.
type Result struct {
	Moved    int    `json:"moved"`
	Method   string `json:"method"` // "move-task" or "batches"
	TaskID   string `json:"task_id,omitempty"`
	Released int    `json:"released"` // non-matching messages handed back to the DLQ
	// StillHidden counts DLQ messages that were invisible when the redrive
	// ended: held by an interrupted earlier redrive (they reappear after its
	// --hold) or by another consumer. Run the redrive again later for them.
	StillHidden int64 `json:"still_hidden"`
}

// Redrive moves dead-lettered messages back to the main queue.
func Redrive(ctx context.Context, st *ledger.Store, dlq, main *queue.Queue, log *zap.Logger, o Options) (Result, error) {
	return redrive(ctx, st, dlq, main, log, o, hooks{})
}

func redrive(ctx context.Context, st *ledger.Store, dlq, main *queue.Queue, log *zap.Logger, o Options, h hooks) (Result, error) {
	if o.Hold <= 0 {
		o.Hold = 5 * time.Minute
	}
	if o.Reason == "" && o.Max == 0 {
		before, err := st.Now(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("redrive: %w", err)
		}
		task, err := dlq.StartMove(ctx, main)
		if err == nil {
			res := Result{Method: "move-task", TaskID: task}
			for {
				status, moved, err := dlq.MoveStatus(ctx)
				if err != nil {
					return res, err
				}
				res.Moved = int(moved)
				if status.Ended() {
					if status != queue.MoveTaskCompleted {
						return res, fmt.Errorf("message move task %s ended %s after %d messages", task, status, moved)
					}
					break
				}
				select {
				case <-ctx.Done():
					return res, fmt.Errorf("stopped waiting for move task %s (it continues on the server): %w", task, ctx.Err())
				case <-time.After(2 * time.Second):
				}
			}
			return res, st.FailureMarkAllRedriven(ctx, before)
		}
		log.Info("StartMessageMoveTask is not available here; moving batch by batch", zap.Error(err))
	}
	res, err := redriveBatches(ctx, st, dlq, main, o, h)
	if err == nil {
		if d, derr := dlq.Depth(ctx); derr == nil {
			res.StillHidden = d.InFlight
		}
	}
	return res, err
}

// redriveBatches moves the messages that were in the DLQ when it started:
// photos that fail again while workers run are dead-lettered again during the
// redrive, and moving those too would pass them back and forth for ever. Each
// photo (or, without one, each body) is moved at most once per redrive, a
// second message for it is held and handed back at the end, and the redrive
// stops after as many messages as the DLQ held at its start.
func redriveBatches(ctx context.Context, st *ledger.Store, dlq, main *queue.Queue, o Options, h hooks) (Result, error) {
	res := Result{Method: "batches"}
	before, err := dlq.Depth(ctx)
	if err != nil {
		return res, err
	}
	limit := int(before.Total())
	if o.Max > 0 {
		limit = min(limit, o.Max)
	}
	seen := 0
	moved := map[string]bool{} // photo ids (or bodies) moved by this redrive
	var held []string
	defer func() {
		// Hand back what did not match, even when interrupted.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, r := range held {
			if err := dlq.ChangeVisibility(rctx, r, 0); err == nil {
				res.Released++
			}
		}
	}()
	// The depth is approximate: seen bounds the receives as well, so that a
	// low reading cannot stop the redrive before the old messages are through
	// nor a high one keep it going on new ones.
	for res.Moved < limit && seen < 2*limit+queue.MaxBatch {
		msgs, err := dlq.Receive(ctx, queue.MaxBatch, time.Second, o.Hold)
		if err != nil {
			return res, err
		}
		if len(msgs) == 0 {
			return res, nil
		}
		seen += len(msgs)
		var bodies, receipts, msgIDs, photoIDs []string
		for _, m := range msgs {
			reason := m.Attributes[queue.AttrReason]
			if reason == "" {
				reason = ReasonUnknown
			}
			id := m.Attributes[queue.AttrPhotoID]
			if dm, err := queue.Decode(m.Body); id == "" && err == nil {
				id = dm.PhotoID
			}
			once := id
			if once == "" {
				once = "body:" + m.Body
			}
			if moved[once] || (o.Reason != "" && reason != o.Reason) || res.Moved+len(bodies) >= limit {
				held = append(held, m.ReceiptHandle)
				continue
			}
			moved[once] = true
			bodies = append(bodies, m.Body)
			receipts = append(receipts, m.ReceiptHandle)
			if src := m.Attributes[queue.AttrSourceMessage]; src != "" {
				msgIDs = append(msgIDs, src)
			}
			if id != "" {
				photoIDs = append(photoIDs, id)
			}
		}
		if len(bodies) == 0 {
			continue
		}
		// A photo that fails again once its message is back in the main
		// queue fails after this instant: the ledger leaves it failed.
		before, err := st.Now(ctx)
		if err != nil {
			return res, fmt.Errorf("redrive: %w", err)
		}
		// Send first, then delete: an interruption in between leaves the
		// message in both queues, never in neither.
		if err := main.SendBatch(ctx, bodies, time.Minute); err != nil {
			return res, fmt.Errorf("redrive: %w (the messages stay in the DLQ)", err)
		}
		failed, err := dlq.DeleteBatch(ctx, receipts)
		if err != nil {
			return res, fmt.Errorf("redrive: sent %d messages but could not delete them from the DLQ (they are now in both queues): %w", len(bodies), err)
		}
		if len(failed) > 0 {
			return res, fmt.Errorf("redrive: %d messages sent but not deleted from the DLQ: %v", len(failed), failed)
		}
		if h.afterSend != nil {
			h.afterSend()
		}
		if err := st.FailureMarkRedriven(ctx, msgIDs, photoIDs, before); err != nil {
			return res, err
		}
		res.Moved += len(bodies)
		if h.afterBatch != nil {
			h.afterBatch(res.Moved)
		}
	}
	return res, nil
}
