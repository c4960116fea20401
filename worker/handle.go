package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/failure"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// Outcome names how a photo's message ended.
type Outcome string

// The outcomes of a message.
const (
	Migrated     Outcome = "migrated"      // keys swapped (or derived objects moved)
	AlreadyDone  Outcome = "already_done"  // nothing left to move: a duplicate delivery
	Archived     Outcome = "archived"      // no owner: set aside for review
	Skipped      Outcome = "skipped"       // rolled back by the operator: a message of an older run, or a swap that found the rollback
	Deleted      Outcome = "deleted"       // the application deleted the photo; its uncommitted copies were discarded
	DeadLettered Outcome = "dead_lettered" // permanent failure
	Retry        Outcome = "retry"         // transient failure: the message comes back
	Released     Outcome = "released"      // abandoned at shutdown: the message comes back at once
)

// result is what processing one photo produced.
type result struct {
	outcome Outcome
	objects int
	copied  int
	bytes   int64
	replans int
	// attempts is the ledger's count of deliveries begun on the photo.
	attempts int
}

// handle processes one message end to end and settles it with the queue:
// delete after success, dead-letter on a permanent failure, hide for a while on
// a transient one, release at once when abandoned by a hard stop.
func (w *Worker) handle(ctx context.Context, m queue.Received) {
	start := time.Now()
	msg, err := queue.Decode(m.Body)
	if err != nil {
		w.settle(ctx, m, queue.Message{}, result{}, failure.Permanent(failure.MalformedMessage, err), start)
		return
	}
	stopHeartbeat := w.heartbeat(ctx, m, msg.PhotoID)
	var res result
	op := func() error {
		var err error
		res, err = w.process(ctx, msg)
		if err == nil {
			w.gate.succeeded(failure.S3, failure.Postgres)
			return nil
		}
		if _, permanent := failure.Classify(err); permanent || ctx.Err() != nil {
			return backoff.Permanent(err)
		}
		if dep, outage := failure.Dependency(err); outage && w.gate.failed(dep) {
			// The dependency is down: retrying here only waits for it. The
			// message goes back, and the worker waits for the dependency.
			return backoff.Permanent(err)
		}
		return err
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = w.cfg.RetryInitial
	b.MaxElapsedTime = w.cfg.RetryMaxElapsed
	err = backoff.RetryNotify(op, backoff.WithContext(b, ctx), func(err error, next time.Duration) {
		w.log.Debug("transient failure; retrying", zap.String("photo_id", msg.PhotoID), zap.Error(err), zap.Duration("in", next))
	})
	stopHeartbeat()
	w.settle(ctx, m, msg, res, err, start)
}

// heartbeat keeps the message hidden while its photo is in hand, so that a copy
// longer than the visibility timeout is not handed to a second worker.
func (w *Worker) heartbeat(ctx context.Context, m queue.Received, photoID string) (stop func()) {
	// The loop ends at stop or when ctx ends; an extension under way when stop
	// is called still runs under ctx, and stop waits for it.
	beatCtx, cancel := context.WithCancel(ctx)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		every(beatCtx, w.cfg.HeartbeatInterval, func() {
			if err := w.queue.ChangeVisibility(ctx, m.ReceiptHandle, w.cfg.VisibilityTimeout); err != nil && ctx.Err() == nil {
				w.log.Warn("extend visibility", zap.String("photo_id", photoID), zap.Error(err))
			} else if err == nil {
				w.cfg.Metrics.Add(observe.Extensions, 1)
			}
		})
	}()
	return func() { cancel(); <-finished }
}

// settle tells the queue how the message ended and logs one line for it.
func (w *Worker) settle(ctx context.Context, m queue.Received, msg queue.Message, res result, err error, start time.Time) {
	// The queue calls below must happen even when the hard stop cancelled ctx.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	fields := []zap.Field{
		zap.String("photo_id", msg.PhotoID), zap.String("run_id", msg.RunID), zap.String("message_id", m.ID),
		zap.Int("objects", res.objects), zap.Int("copied", res.copied), zap.Int64("bytes", res.bytes),
		zap.Duration("duration", time.Since(start)), zap.Int("receive_count", m.ReceiveCount),
	}
	if res.replans > 0 {
		fields = append(fields, zap.Int("replans", res.replans))
	}
	if err == nil {
		w.count(res)
		w.cfg.Metrics.Photo(string(res.outcome), "", time.Since(start).Seconds())
		if derr := w.deleteMessage(qctx, m); derr != nil {
			// The swap committed; the message will come back and be found done.
			w.log.Warn("photo done but its message could not be deleted; it will be redelivered and found done", append(fields, zap.Error(derr))...)
		}
		w.log.Info("photo "+string(res.outcome), append(fields, zap.String("outcome", string(res.outcome)))...)
		return
	}
	reason, permanent := failure.Classify(err)
	dep, outage := failure.Dependency(err)
	if outage && res.attempts > maxOutageAttempts {
		// A dependency that keeps failing this photo while it answers others
		// (an object the server cannot serve) is the photo's problem after
		// all: from now on it spends receives like any transient failure.
		outage = false
	}
	if outage {
		reason = failure.Reason("unavailable_" + dep)
	}
	fields = append(fields, zap.String("reason", string(reason)), zap.Error(err))
	switch {
	case permanent:
		w.cfg.Metrics.Photo(string(DeadLettered), string(reason), time.Since(start).Seconds())
		w.deadLetter(qctx, m, msg, reason, err, fields)
	case ctx.Err() != nil:
		w.cfg.Metrics.Photo(string(Released), string(reason), time.Since(start).Seconds())
		w.stats.released.Add(1)
		w.handBack(qctx, m, msg, 0, "shutdown")
		w.log.Info("photo released at shutdown", append(fields, zap.String("outcome", string(Released)))...)
	case outage:
		// Not the photo's fault: handed back as a fresh message, so that
		// the outage spends none of its receives.
		w.stats.released.Add(1)
		w.cfg.Metrics.Photo(string(Released), string(reason), time.Since(start).Seconds())
		delay := w.outageDelay()
		w.handBack(qctx, m, msg, delay, "outage")
		w.log.Warn("photo handed back: a dependency is unavailable", append(fields, zap.String("outcome", string(Released)), zap.String("dependency", dep), zap.Duration("retry_in", delay))...)
	case w.maxReceives > 0 && m.ReceiveCount >= w.maxReceives:
		// The queue's last delivery: dead-letter it here, with its reason,
		// rather than let the redrive policy move it without one.
		w.cfg.Metrics.Photo(string(DeadLettered), string(failure.RetriesExhausted), time.Since(start).Seconds())
		w.deadLetter(qctx, m, msg, failure.RetriesExhausted, fmt.Errorf("failed on all %d deliveries; last: %w", m.ReceiveCount, err), fields)
	default:
		w.stats.retried.Add(1)
		w.cfg.Metrics.Photo(string(Retry), string(reason), time.Since(start).Seconds())
		if lerr := w.store.FailureRecord(qctx, ledger.Failure{PhotoID: msg.PhotoID, RunID: msg.RunID, MessageID: m.ID, Reason: string(reason), Error: err.Error(), ReceiveCount: m.ReceiveCount}); lerr != nil {
			fields = append(fields, zap.NamedError("ledger_error", lerr))
		}
		if lerr := w.store.PhotoMoveRelease(qctx, msg.PhotoID, w.id); lerr != nil {
			fields = append(fields, zap.NamedError("ledger_error", lerr))
		}
		delay := w.releaseDelay(m.ReceiveCount)
		if verr := w.queue.ChangeVisibility(qctx, m.ReceiptHandle, delay); verr != nil {
			fields = append(fields, zap.NamedError("visibility_error", verr))
		}
		w.log.Warn("photo failed; will retry", append(fields, zap.String("outcome", string(Retry)), zap.Duration("retry_in", delay))...)
	}
}

// handBack returns a message the worker did not finish for reasons of its
// own (a stop, a pause, an outage) without spending its receives: a fresh
// copy is sent, visible after delay, and the received one deleted. Every
// delivery counts toward the redrive policy's maxReceiveCount, so releasing
// the received message would let pauses, restarts and outages dead-letter
// healthy photos. If the send fails the message is released instead (that
// costs one receive); if the delete fails there are two messages for the photo
// (harmless: workers are idempotent). The photo is back to enqueued: no worker
// holds it.
func (w *Worker) handBack(ctx context.Context, m queue.Received, msg queue.Message, delay time.Duration, why string) {
	fields := []zap.Field{zap.String("photo_id", msg.PhotoID), zap.String("message_id", m.ID), zap.String("why", why)}
	if err := w.queue.SendDelayed(ctx, m.Body, delay); err != nil {
		if verr := w.queue.ChangeVisibility(ctx, m.ReceiptHandle, delay); verr != nil {
			w.log.Warn("hand back message: neither sent again nor released; it reappears when its visibility times out", append(fields, zap.NamedError("send_error", err), zap.NamedError("release_error", verr))...)
		}
	} else {
		w.cfg.Metrics.HandBack(why)
		if err := w.queue.Delete(ctx, m.ReceiptHandle); err != nil {
			w.log.Warn("hand back message: sent again but the original not deleted; the photo will be delivered twice", append(fields, zap.Error(err))...)
		}
	}
	if msg.PhotoID != "" {
		if err := w.store.PhotoMoveRelease(ctx, msg.PhotoID, w.id); err != nil {
			w.log.Debug("mark photo released", append(fields, zap.Error(err))...)
		}
	}
}

// maxOutageAttempts bounds the deliveries a photo may fail for a dependency
// without spending the queue's receives.
const maxOutageAttempts = 30

// outageDelay is how long a message handed back during an outage stays
// hidden: long enough not to spin while the worker waits for the dependency.
func (w *Worker) outageDelay() time.Duration {
	d := min(w.cfg.ReleaseBase, time.Minute)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (w *Worker) count(res result) {
	switch res.outcome {
	case Migrated:
		w.stats.migrated.Add(1)
	case Archived:
		w.stats.archived.Add(1)
	default:
		w.stats.alreadyDone.Add(1)
	}
	w.stats.objectsCopied.Add(int64(res.copied))
	w.stats.bytesCopied.Add(res.bytes)
	w.cfg.Metrics.Copied(res.copied, res.bytes)
}

func (w *Worker) deleteMessage(ctx context.Context, m queue.Received) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxElapsedTime = 20 * time.Second
	return backoff.Retry(func() error { return w.queue.Delete(ctx, m.ReceiptHandle) }, backoff.WithContext(b, ctx))
}

// releaseDelay is the visibility given back after a transient failure:
// exponential in the number of deliveries, with jitter so that a fleet that
// failed together does not retry together.
func (w *Worker) releaseDelay(receiveCount int) time.Duration {
	d := w.cfg.ReleaseBase
	for i := 1; i < receiveCount && d < w.cfg.ReleaseMax; i++ {
		d *= 2
	}
	d = min(d, w.cfg.ReleaseMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// deadLetter discards the photo's uncommitted copies, records a permanent
// failure in the ledger, sends the message to the DLQ with its reason, and
// only then deletes it from the main queue. If any step fails the message
// stays in the main queue and fails again later: it can be duplicated in the
// DLQ, never lost. A photo that is dead-lettered leaves nothing of ours under
// users/ (DESIGN.md, worker invariant 12): the copies this attempt made (all
// awaited by moveAll, their ETags recorded) and those an earlier attempt
// killed before it could discard them left (their intents are in the ledger)
// go first, each only while it still holds keymigrate's bytes.
func (w *Worker) deadLetter(ctx context.Context, m queue.Received, msg queue.Message, reason failure.Reason, cause error, fields []zap.Field) {
	if msg.PhotoID != "" {
		if err := w.discardOpen(ctx, msg.PhotoID); err != nil {
			w.log.Error("discard the copies of a photo to dead-letter; leaving the message in the queue", append(fields, zap.NamedError("discard_error", err))...)
			_ = w.queue.ChangeVisibility(ctx, m.ReceiptHandle, w.releaseDelay(m.ReceiveCount))
			return
		}
	}
	body := ""
	if reason == failure.MalformedMessage {
		body = m.Body
	}
	errText := cause.Error()
	if err := w.store.FailureRecord(ctx, ledger.Failure{
		PhotoID: msg.PhotoID, RunID: msg.RunID, MessageID: m.ID, Reason: string(reason), Permanent: true,
		Error: errText, Body: body, ReceiveCount: m.ReceiveCount,
	}); err != nil {
		w.log.Error("record permanent failure; leaving the message in the queue", append(fields, zap.NamedError("ledger_error", err))...)
		_ = w.queue.ChangeVisibility(ctx, m.ReceiptHandle, w.releaseDelay(m.ReceiveCount))
		return
	}
	if len(errText) > 1024 {
		errText = errText[:1024] + "…"
	}
	attrs := map[string]string{
		queue.AttrReason: string(reason), queue.AttrError: errText, queue.AttrPhotoID: msg.PhotoID,
		queue.AttrSourceMessage: m.ID, queue.AttrReceiveCount: fmt.Sprint(m.ReceiveCount),
	}
	if err := w.dlq.Send(ctx, m.Body, attrs); err != nil {
		w.log.Error("send to dead-letter queue; leaving the message in the queue", append(fields, zap.NamedError("dlq_error", err))...)
		_ = w.queue.ChangeVisibility(ctx, m.ReceiptHandle, w.releaseDelay(m.ReceiveCount))
		return
	}
	if err := w.deleteMessage(ctx, m); err != nil {
		w.log.Warn("dead-lettered but not deleted from the main queue; it will fail again and be dead-lettered twice", append(fields, zap.NamedError("delete_error", err))...)
	}
	w.stats.deadLettered.Add(1)
	w.log.Error("photo dead-lettered", append(fields, zap.String("outcome", string(DeadLettered)))...)
}

// process migrates one photo: read the row, plan, move and verify every
// object, then swap by compare-and-swap. A failed compare-and-swap (the app
// changed the row) re-reads and re-plans, up to MaxReplans times.
func (w *Worker) process(ctx context.Context, msg queue.Message) (result, error) {
	var res result
	att, err := w.store.PhotoMoveBeginAttempt(ctx, msg.PhotoID, msg.RunID, w.id)
	if err != nil {
		return res, err
	}
	res.attempts = att.Attempts
	if !att.Proceed {
		// Rolled back by the operator (and this message's run is not newer
		// than the rollback), or deleted by the application: both are final.
		res.outcome = Skipped
		return res, nil
	}
	st := passState{redo: map[string]bool{}}
	for attempt := 0; attempt <= w.cfg.MaxReplans; attempt++ {
		res = result{replans: attempt, attempts: att.Attempts}
		if attempt == 0 && w.hooks.beforeLoad != nil {
			if err := w.hooks.beforeLoad(ctx, msg.PhotoID); err != nil {
				return res, err
			}
		}
		var replan bool
		if res, replan, err = w.pass(ctx, msg, att, res, &st); !replan {
			return res, err
		}
	}
	return res, failure.Permanentf(failure.PreconditionFailed, "photo %s: its row changed %d times while being migrated", msg.PhotoID, w.cfg.MaxReplans+1)
}

// pass is one of process's passes over the photo's current row: read it,
// settle at once a photo that needs no move (deleted, archived, ownerless),
// else plan, move and verify, and swap. replan says the application changed
// the row or a source meanwhile: process makes another pass. st carries from
// one pass to the next what copies made first taught (see passState).
func (w *Worker) pass(ctx context.Context, msg queue.Message, att ledger.Attempt, res result, st *passState) (_ result, replan bool, _ error) {
	p, err := w.store.PhotoGet(ctx, msg.PhotoID)
	if errors.Is(err, ledger.ErrPhotoNotFound) {
		if !att.Known {
			return res, false, failure.Permanent(failure.UnknownPhoto, err)
		}
		gone, err := w.photoGone(ctx, msg.PhotoID)
		return gone, false, err
	}
	if err != nil {
		return res, false, err
	}
	if p.Status != nil && *p.Status == ledger.ArchivedStatus {
		// A process killed between the archive and its discard left the
		// copies of an earlier plan: this redelivery discards them.
		if err := w.discardOpen(ctx, p.ID); err != nil {
			return res, false, err
		}
		res.outcome = AlreadyDone
		return res, false, nil
	}
	if p.OwnerID == nil {
		return w.archive(ctx, p, msg.RunID, res)
	}
	var (
		plan    Plan
		gens    map[string]int64
		results []moveResult
		// settle joins the discards the copy-first path leaves running
		// beside the source reads (moveFirst); every return joins it.
		settle = func() error { return nil }
	)
	defer func() { _ = settle() }()
	if !st.careful && !msg.Repair && w.copyFirst() {
		plan, gens, results, settle, err = w.moveFirst(ctx, p, att.JobID)
		if err == nil && len(plan.Moves) == 0 {
			if err := settle(); err != nil {
				return res, false, err
			}
			res, err = w.commitNothingMoved(ctx, p, msg.RunID, plan, res)
			return res, false, err
		}
	} else {
		plan, gens, err = w.planMoves(ctx, p, att.JobID, msg.Repair)
		if err != nil {
			return res, false, err
		}
		if len(plan.Moves) == 0 {
			res, err = w.commitNothingMoved(ctx, p, msg.RunID, plan, res)
			return res, false, err
		}
		for i := range plan.Moves {
			plan.Moves[i].redo = st.redo[plan.Moves[i].New]
		}
		results, err = w.moveAll(ctx, p, plan.Moves, st.careful)
	}
	if errors.Is(err, errReplan) {
		w.log.Debug("the application changed the row while its objects were copied; re-planning", zap.String("photo_id", p.ID), zap.Error(err))
		return res, true, nil
	}
	if err != nil {
		return res, false, err
	}
	if w.hooks.beforeSwap != nil {
		// The hook runs once every move is verified: the metadata's copy
		// still under way (moveFirst) too.
		for _, r := range results {
			if r.late != nil {
				<-r.late.done
			}
		}
		if err := w.hooks.beforeSwap(ctx, p.ID); err != nil {
			return res, false, err
		}
	}
	// The sources are read once more, all at once, right before the swap:
	// a legacy object overwritten in place since it was copied would leave
	// the row pointing at stale bytes (cleanup checks them again before it
	// deletes anything). A copy made first is proven by this same read.
	results, changed, err := w.readSources(ctx, results, plan.RowChanges && w.cfg.RecheckSources)
	if err := errors.Join(err, settle()); err != nil {
		return res, false, err
	}
	if changed.key != "" {
		w.log.Debug("legacy object changed since it was copied, or its copy made first is not proven; re-planning",
			zap.String("photo_id", p.ID), zap.String("key", changed.key), zap.String("why", changed.why))
		if changed.unread {
			st.careful = true
			for _, k := range changed.refused {
				st.redo[k] = true
			}
		}
		return res, true, nil
	}
	moves := countMoves(&res, results)
	for i := range moves {
		moves[i].DiscardGen = gens[moves[i].NewKey]
	}
	if !plan.RowChanges {
		return w.commitDerived(ctx, p, msg.RunID, plan, moves, res)
	}
	return w.swap(ctx, p, msg.RunID, plan, moves, res)
}

// archive sets an ownerless photo aside for review. A rollback meanwhile
// skips it; a row the application changed meanwhile takes another pass.
// Copies an earlier pass made under the owner the application has since
// removed are discarded once the photo is archived: nothing under users/ is
// then left that no row points at. Not before: until the archive commits,
// another worker's swap of the same photo may still rely on them; after it,
// no swap can (it refuses an archived row).
func (w *Worker) archive(ctx context.Context, p ledger.Photo, runID string, res result) (_ result, replan bool, _ error) {
	ok, err := w.store.PhotoMoveArchive(ctx, p, runID)
	if errors.Is(err, ledger.ErrStopped) {
		res.outcome = Skipped
		return res, false, w.discardOpen(ctx, p.ID)
	}
	if err != nil {
		return res, false, err
	}
	if ok {
		res.outcome = Archived
		return res, false, w.discardOpen(ctx, p.ID)
	}
	return res, true, nil
}

// planMoves plans the photo's moves and records them as intents. Copies an
// earlier plan made that this one no longer wants (under a former owner's
// prefix, for a column the app has since moved) go now. It returns, for each
// planned key, the discard generation the intents recorded: the swap commits
// a move only if no discard was claimed on it since (S1 in
// docs/soak-findings.md).
//
// A planned key whose discard another attempt claimed and has not settled
// (its delete may be in flight) is not copied to: the intents leave it
// alone, and discard either takes the claim over (it is older than
// DiscardTakeover: that delete can no longer land) and completes it, after
// which the intents are recorded again, or returns a transient error.
func (w *Worker) planMoves(ctx context.Context, p ledger.Photo, jobID string, repair bool) (Plan, map[string]int64, error) {
	plan, err := w.plan(ctx, p, jobID, repair)
	if err != nil {
		return plan, nil, err
	}
	rec, err := w.store.ObjectMoveRecordIntents(ctx, p.ID, plan.JobID, intents(plan.Moves))
	if err != nil {
		return plan, nil, err
	}
	if err := w.discard(ctx, append(rec.Stale, rec.Claimed...)); err != nil {
		return plan, nil, err
	}
	if len(rec.Claimed) == 0 {
		return plan, rec.Gens, nil
	}
	// The claimed keys were taken over and settled: planned again, they are
	// re-opened now.
	rec, err = w.store.ObjectMoveRecordIntents(ctx, p.ID, plan.JobID, intents(plan.Moves))
	if err != nil {
		return plan, nil, err
	}
	if len(rec.Claimed) > 0 {
		return plan, nil, fmt.Errorf("photo %s: a discard of %s by another attempt is in flight; retrying later", p.ID, rec.Claimed[0].NewKey)
	}
	return plan, rec.Gens, w.discard(ctx, rec.Stale)
}

// commitNothingMoved records a photo with nothing left to move as done (a
// duplicate delivery), or skipped if it was rolled back meanwhile.
func (w *Worker) commitNothingMoved(ctx context.Context, p ledger.Photo, runID string, plan Plan, res result) (result, error) {
	outcome, err := w.store.PhotoMoveCommitDerived(ctx, p.ID, runID, plan.OwnerID, plan.JobID, nil)
	if err != nil {
		return res, err
	}
	res.outcome = AlreadyDone
	if outcome == ledger.Stopped {
		res.outcome = Skipped
	}
	return res, nil
}

// countMoves counts the verified moves in res and returns their records.
func countMoves(res *result, results []moveResult) []ledger.ObjectMove {
	moves := make([]ledger.ObjectMove, 0, len(results))
	for _, r := range results {
		moves = append(moves, r.ObjectMove)
		res.objects++
		if r.Copied {
			res.copied++
			res.bytes += r.Size
		}
	}
	return moves
}

// commitDerived records the moves of a photo whose row keeps its keys (only
// derived objects moved). A rollback meanwhile discards the copies; a move
// discarded by another attempt since this one planned takes another pass.
func (w *Worker) commitDerived(ctx context.Context, p ledger.Photo, runID string, plan Plan, moves []ledger.ObjectMove, res result) (_ result, replan bool, _ error) {
	outcome, err := w.store.PhotoMoveCommitDerived(ctx, p.ID, runID, plan.OwnerID, plan.JobID, moves)
	if err != nil {
		return res, false, err
	}
	switch outcome {
	case ledger.Stopped:
		stopped, err := w.stopped(ctx, p.ID)
		return stopped, false, err
	case ledger.RowChanged:
		w.log.Debug("a copy was discarded by another attempt since it was planned; re-planning", zap.String("photo_id", p.ID))
		return res, true, nil
	}
	res.outcome = Migrated
	if res.copied == 0 {
		res.outcome = AlreadyDone
	}
	return res, false, nil
}

// swap points the row at the verified copies in one compare-and-swap
// transaction with the ledger (their sources were read again just before, by
// readSources). A row changed since it was read takes another pass; a
// rollback meanwhile discards the copies.
func (w *Worker) swap(ctx context.Context, p ledger.Photo, runID string, plan Plan, moves []ledger.ObjectMove, res result) (_ result, replan bool, _ error) {
	swapStart := time.Now()
	outcome, err := w.store.PhotoMoveSwap(ctx, ledger.SwapInput{
		PhotoID: p.ID, RunID: runID, OwnerID: plan.OwnerID, JobID: plan.JobID,
		Old: p.Keys, New: plan.New, Objects: moves,
	})
	w.cfg.Metrics.Observe(observe.SwapHist, time.Since(swapStart).Seconds())
	if err != nil {
		return res, false, err
	}
	switch outcome {
	case ledger.Swapped:
		res.outcome = Migrated
		return res, false, nil
	case ledger.Stopped:
		stopped, err := w.stopped(ctx, p.ID)
		return stopped, false, err
	}
	w.log.Debug("row changed since it was read; re-planning", zap.String("photo_id", p.ID), zap.Int("attempt", res.replans+1))
	return res, true, nil
}

// photoGone ends the attempt on a photo the application deleted: every copy
// this or an earlier attempt made and never committed is deleted (only where
// it is still keymigrate's own write), and the ledger records the photo as
// deleted. Nothing is dead-lettered: the application's deletion is final.
func (w *Worker) photoGone(ctx context.Context, photoID string) (result, error) {
	if err := w.discardOpen(ctx, photoID); err != nil {
		return result{}, err
	}
	if err := w.store.PhotoMoveMarkDeleted(ctx, photoID); err != nil {
		return result{}, err
	}
	return result{outcome: Deleted}, nil
}

// stopped ends an attempt whose swap found the photo rolled back (or deleted)
// meanwhile: the copies it made for nothing are discarded.
func (w *Worker) stopped(ctx context.Context, photoID string) (result, error) {
	if err := w.discardOpen(ctx, photoID); err != nil {
		return result{}, err
	}
	return result{outcome: Skipped}, nil
}

// discardOpen discards every copy of the photo that was never committed:
// those of this attempt and of earlier ones (a process killed between a copy
// and its discard leaves the intent, and the copy's ETag if it was recorded).
func (w *Worker) discardOpen(ctx context.Context, photoID string) error {
	open, err := w.store.ObjectMoveListOpen(ctx, photoID)
	if err != nil {
		return err
	}
	return w.discard(ctx, open)
}

// sourceChange names a source that changed since its copy was made, or a
// copy made first that the read of its source did not prove (unread; refused
// then lists the new keys of every such copy).
type sourceChange struct {
	key, why string
	unread   bool
	refused  []string
}

// passState is what one of a photo's passes hands the next. A copy made first
// that its source's read did not prove sets careful: the later passes read
// every source before its copy. Its new key goes into redo: the careful pass
// copies it again over keymigrate's own unproven copy (conditionally on the
// ETag its write returned) rather than accept it, since it may lack what
// only a read of the source lets a copy set (a storage class, KMS keys).
// The unproven copy is never deleted here: a second worker on the same photo
// may already have accepted it.
type passState struct {
	careful bool
	redo    map[string]bool
}

// readSources reads, all at once, the sources of the moves that need it right
// before the swap: every copy made first (unread), which that read proves
// from the copy's own response, and, when recheck is set, every other source,
// whose ETag must still be the one its copy was made from. The metadata's
// pinned copy on the copy-first path (late), sent in the background with or
// before these reads, is joined here, not read again: being pinned to its
// source's ETag, it proved its source when it was made (see moveFirst). It
// returns the verified moves, or the first source that changed (then the
// photo is re-planned). A copy made first that the read does not prove is
// discarded later, by the careful pass (see passState), never deleted here.
func (w *Worker) readSources(ctx context.Context, results []moveResult, recheck bool) ([]moveResult, sourceChange, error) {
	proven := make([]moveResult, len(results))
	changes := make([]sourceChange, len(results))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.cfg.ObjectConcurrency)
	for i, r := range results {
		proven[i] = r
		if r.late != nil {
			g.Go(func() error {
				<-r.late.done
				proven[i] = r.late.r
				return r.late.err
			})
			continue
		}
		if r.unread == nil && (!recheck || r.Superseded) {
			continue
		}
		g.Go(func() error {
			if r.unread != nil {
				m, ch, err := w.proveUnread(gctx, r.unread)
				proven[i], changes[i] = m, ch
				return err
			}
			src, err := w.objects.Head(gctx, r.OldKey)
			if errors.Is(err, objstore.ErrNotFound) || (err == nil && src.ETag != r.SourceETag) {
				changes[i] = sourceChange{key: r.OldKey, why: "changed since its copy"}
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, sourceChange{}, err
	}
	var first sourceChange
	var refused []string
	for i, ch := range changes {
		if ch.key == "" {
			continue
		}
		if first.key == "" || (ch.unread && !first.unread) {
			first = ch
		}
		if c := results[i].unread; c != nil {
			refused = append(refused, c.move.New)
		}
	}
	if first.key != "" {
		first.refused = refused
		return nil, first, nil
	}
	return proven, sourceChange{}, nil
}

// proveUnread reads the source of a copy made first and proves the copy from
// its own response against that read (objstore.CopyStandsFor): the read,
// made after the copy landed, names the bytes the copy holds. A source that
// is gone, changed, or that a copy made without reading it cannot stand for
// is a sourceChange.
func (w *Worker) proveUnread(ctx context.Context, c *copied) (moveResult, sourceChange, error) {
	src, err := w.objects.Head(ctx, c.move.Old)
	if errors.Is(err, objstore.ErrNotFound) {
		return moveResult{}, sourceChange{key: c.move.Old, why: "deleted right after its copy", unread: true}, nil
	}
	if err != nil {
		return moveResult{}, sourceChange{}, err
	}
	if why := w.objects.CopyStandsFor(src, c.res); why != "" {
		return moveResult{}, sourceChange{key: c.move.Old, why: why, unread: true}, nil
	}
	dst := objstore.FromResponse(src, c.res)
	v := objstore.Compare(src, dst)
	v.Method += " (copy response, source read after the copy)"
	return moveResult{ObjectMove: record(c.move, src, dst, v), Copied: true}, sourceChange{}, nil
}
