// Package worker migrates photos: it receives messages from the main queue and,
// for each photo, copies its objects to user-scoped keys, verifies the copies,
// and swaps the row's keys in one compare-and-swap transaction with the ledger.
// Only then is the message deleted.
//
// Lifecycle: Run receives until its context ends (soft stop), then stops
// receiving and lets the photos in hand finish for up to ShutdownGrace; what is
// still unfinished after that is abandoned before its swap (hard stop) and its
// message released with visibility 0. Nothing is lost either way: a message is
// only ever deleted after its photo's transaction committed.
package worker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/pipeline/failure"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/pipeline/rescue"
	"github.com/keymigrate/keymigrate/internal/pipeline/s3caps"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// Config tunes a worker.
type Config struct {
	// Concurrency is the number of photos processed at once.
	Concurrency int
	// ObjectConcurrency bounds the objects of one photo copied and verified
	// at once, so that a photo takes about one object's latency.
	ObjectConcurrency int
	// WaitTime is the long-poll wait of each receive (at most 20s).
	WaitTime time.Duration
	// VisibilityTimeout hides a received message from other workers; it is
	// extended every HeartbeatInterval while the photo is being worked on.
	VisibilityTimeout time.Duration
	// HeartbeatInterval defaults to a third of VisibilityTimeout.
	HeartbeatInterval time.Duration
	// MaxReplans bounds how often a photo is re-planned because the app changed
	// its row between copy and swap, before it is dead-lettered.
	MaxReplans int
	// RetryInitial and RetryMaxElapsed shape the in-worker retries of a
	// transient failure (exponential, with jitter).
	RetryInitial    time.Duration
	RetryMaxElapsed time.Duration
	// ReleaseBase and ReleaseMax shape the visibility given back to a message
	// whose photo still failed after the in-worker retries: base * 2^(receives-1),
	// capped at max, so a struggling dependency is not hammered.
	ReleaseBase time.Duration
	ReleaseMax  time.Duration
	// RecheckSources reads every source's ETag again right before the swap and
	// re-plans if one changed, so that a legacy object overwritten in place
	// between its copy and the swap is never left behind. It costs one HEAD per
	// object; with Phase 1 on (no legacy writes) it cannot trigger.
	RecheckSources bool
	// CopyFirst copies an object before reading its source, where the fleet's
	// probe found the server keeps every header on a copy and the bucket keeps
	// no per-object ACLs: the read of the source made after the copy (the
	// recheck, always made for such a copy) proves the copy from its own
	// response. One request and one round trip less per object; off, every
	// source is read before its copy and the copy pinned to it.
	CopyFirst bool
	// ShutdownGrace is how long photos in hand may still finish after a stop.
	ShutdownGrace time.Duration
	// Drain makes Run return once the queue stays empty and nothing is in hand.
	Drain bool
	// DrainPolls is the number of consecutive empty polls that end a drain.
	DrainPolls int
	// ControlInterval is how often the control record (pause, throttle) is
	// read and the heartbeat written.
	ControlInterval time.Duration
	// DependencyProbe is how often a dependency found down (S3, Postgres,
	// SQS) is tried again while the worker takes no message.
	DependencyProbe time.Duration
	// SweepInterval is how often the fleet looks for photos whose messages
	// were lost; SweepAfter is how long a photo must have been enqueued (or
	// in progress without a live worker) while the queue holds nothing before
	// it is enqueued again.
	SweepInterval time.Duration
	SweepAfter    time.Duration
	// DiscardTakeover is how long another attempt's claimed discard of a copy
	// (ledger.ObjectMoveClaimDiscards) is left to it before this worker takes
	// it over and completes the delete itself. It must be longer than any
	// delete request can take to land: each is sent under a timeout of at
	// most a quarter of it (30 s at most), and S3 is assumed not to apply a
	// request long after its client gave up on it. Defaults to 2 minutes.
	DiscardTakeover time.Duration
	// Metrics, if set, records what the worker does (see internal/wiring/observe).
	Metrics *observe.Metrics
}

// hooks are called at points tests need to reach. They are not part of
// Config, which a user fills in: only the worker's own tests set them (through
// SetHooks in export_test.go), and production leaves them nil.
type hooks struct {
	// beforeLoad runs after the photo was marked in progress, before its row
	// is read.
	beforeLoad func(ctx context.Context, photoID string) error
	// afterCopy runs after each object was copied, before it is verified.
	afterCopy func(ctx context.Context, photoID, newKey string) error
	// beforeSwap runs after every move was verified, before the transaction.
	beforeSwap func(ctx context.Context, photoID string) error
}

// DefaultConfig is the production configuration.
func DefaultConfig() Config {
	return Config{
		Concurrency:       16,
		ObjectConcurrency: 8,
		WaitTime:          20 * time.Second,
		VisibilityTimeout: 60 * time.Second,
		MaxReplans:        5,
		RetryInitial:      500 * time.Millisecond,
		RetryMaxElapsed:   30 * time.Second,
		ReleaseBase:       30 * time.Second,
		ReleaseMax:        15 * time.Minute,
		ShutdownGrace:     25 * time.Second,
		DrainPolls:        2,
		RecheckSources:    true,
		CopyFirst:         true,
		ControlInterval:   2 * time.Second,
		DependencyProbe:   5 * time.Second,
		SweepInterval:     rescue.DefaultInterval,
		SweepAfter:        rescue.DefaultAfter,
		DiscardTakeover:   2 * time.Minute,
	}
}

func (c *Config) defaults() {
	d := DefaultConfig()
	if c.Concurrency <= 0 {
		c.Concurrency = d.Concurrency
	}
	if c.ObjectConcurrency <= 0 {
		c.ObjectConcurrency = d.ObjectConcurrency
	}
	if c.WaitTime <= 0 {
		c.WaitTime = d.WaitTime
	}
	if c.WaitTime > 20*time.Second {
		c.WaitTime = 20 * time.Second
	}
	if c.VisibilityTimeout < time.Second {
		c.VisibilityTimeout = d.VisibilityTimeout
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = c.VisibilityTimeout / 3
	}
	if c.MaxReplans <= 0 {
		c.MaxReplans = d.MaxReplans
	}
	if c.DiscardTakeover <= 0 {
		c.DiscardTakeover = d.DiscardTakeover
	}
	if c.RetryInitial <= 0 {
		c.RetryInitial = d.RetryInitial
	}
	if c.RetryMaxElapsed <= 0 {
		c.RetryMaxElapsed = d.RetryMaxElapsed
	}
	if c.ReleaseBase <= 0 {
		c.ReleaseBase = d.ReleaseBase
	}
	if c.ReleaseMax <= 0 {
		c.ReleaseMax = d.ReleaseMax
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	if c.DrainPolls <= 0 {
		c.DrainPolls = d.DrainPolls
	}
	if c.ControlInterval <= 0 {
		c.ControlInterval = d.ControlInterval
	}
	if c.DependencyProbe <= 0 {
		c.DependencyProbe = d.DependencyProbe
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = d.SweepInterval
	}
	if c.SweepAfter <= 0 {
		c.SweepAfter = d.SweepAfter
	}
}

// Check refuses configurations that would let a message reappear while its
// photo is still being worked on.
func (c Config) Check() error {
	c.defaults()
	if c.HeartbeatInterval >= c.VisibilityTimeout {
		return fmt.Errorf("heartbeat interval %s must be shorter than the visibility timeout %s, or messages reappear while in hand", c.HeartbeatInterval, c.VisibilityTimeout)
	}
	return nil
}

// Stats are a worker's running totals.
type Stats struct {
	Migrated, AlreadyDone, Archived, DeadLettered, Retried, Released int64
	ObjectsCopied, BytesCopied                                       int64
}

// Worker processes messages.
type Worker struct {
	store   *ledger.Store
	objects *objstore.Store
	queue   *queue.Queue
	dlq     *queue.Queue
	log     *zap.Logger
	cfg     Config
	// id names this worker in the ledger (heartbeats, photos in hand).
	id string
	// gate follows S3, Postgres and SQS; no message is taken while one is down.
	gate *gate
	// maxReceives is the main queue's maxReceiveCount (0: unknown): on the
	// last delivery a failing photo is dead-lettered here, with its reason.
	maxReceives int
	// hooks let the worker's tests act at precise points (nil in production).
	hooks hooks

	inflight atomic.Int64
	stats    struct {
		migrated, alreadyDone, archived, deadLettered, retried, released atomic.Int64
		objectsCopied, bytesCopied                                       atomic.Int64
	}
}

// New builds a worker.
func New(store *ledger.Store, objects *objstore.Store, q, dlq *queue.Queue, log *zap.Logger, cfg Config) *Worker {
	cfg.defaults()
	return &Worker{store: store, objects: objects, queue: q, dlq: dlq, log: log, cfg: cfg, id: newWorkerID(), gate: newGate(log, cfg.Metrics)}
}

// Stats returns the running totals.
func (w *Worker) Stats() Stats {
	return Stats{
		Migrated: w.stats.migrated.Load(), AlreadyDone: w.stats.alreadyDone.Load(), Archived: w.stats.archived.Load(),
		DeadLettered: w.stats.deadLettered.Load(), Retried: w.stats.retried.Load(), Released: w.stats.released.Load(),
		ObjectsCopied: w.stats.objectsCopied.Load(), BytesCopied: w.stats.bytesCopied.Load(),
	}
}

// InFlight is the number of photos in hand.
func (w *Worker) InFlight() int64 { return w.inflight.Load() }

// Run receives and processes messages until ctx ends (or, with Drain, until the
// queue stays empty), then shuts down gracefully. It returns nil after a clean
// stop.
func (w *Worker) Run(ctx context.Context) error {
	// Work on a photo outlives the soft stop (ctx) until the grace period ends.
	workCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()

	ctl, caps, err := w.start(ctx)
	if err != nil {
		return err
	}
	stopBackground := w.startBackground(ctx, ctl)
	defer stopBackground()
	w.log.Info("worker started", zap.String("worker_id", ctl.id), zap.Bool("conditional_copy", caps.ConditionalCopy), zap.Bool("conditional_delete", caps.ConditionalDelete), zap.Int("concurrency", w.cfg.Concurrency), zap.Duration("visibility_timeout", w.cfg.VisibilityTimeout), zap.Bool("drain", w.cfg.Drain))

	r := &receiver{w: w, ctl: ctl, workCtx: workCtx, slots: make(chan struct{}, w.cfg.Concurrency)}
	r.run(ctx)
	w.finish(&r.inHand, hardStop)
	return nil
}

// start is Run's first phase: it learns what the bucket and the queue
// enforce, and reads the control record once, so that a paused fleet takes
// nothing from its first poll.
func (w *Worker) start(ctx context.Context) (*control, objstore.Capabilities, error) {
	caps, err := s3caps.Resolve(ctx, w.store, w.objects, false)
	if err != nil {
		w.log.Warn("could not tell which conditions S3 enforces; reading each destination before copying and each object before deleting it", zap.Error(err))
	}
	if w.maxReceives, err = w.queue.MaxReceiveCount(ctx); err != nil {
		w.log.Warn("could not read the queue's redrive policy; leaving the last delivery to it", zap.Error(err))
	}
	ctl := newControl(w.store, w.log, w.id, w.cfg.ControlInterval, w.inflight.Load, w.cfg.Metrics)
	ctl.waiting = w.gate.waitingFor
	if err := ctl.refresh(ctx); err != nil {
		// Without the control record the worker cannot honour a pause.
		return nil, caps, fmt.Errorf("read the control record: %w", err)
	}
	return ctl, caps, nil
}

// startBackground starts Run's three background loops: the control record
// and heartbeat, the probe of dependencies found down, and the lost-message
// sweeper. They outlive the soft stop (ctx) and run until the returned stop,
// which waits for them (the control loop removes the heartbeat as it ends).
func (w *Worker) startBackground(ctx context.Context, ctl *control) (stop func()) {
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var loops sync.WaitGroup
	loops.Go(func() { ctl.run(bgCtx) })
	loops.Go(func() {
		w.gate.probe(bgCtx, w.cfg.DependencyProbe, map[string]func(context.Context) error{
			failure.S3:       w.s3Answers,
			failure.Postgres: func(ctx context.Context) error { return w.store.Pool().Ping(ctx) },
			failure.SQS:      func(ctx context.Context) error { _, err := w.queue.Depth(ctx); return err },
		})
	})
	loops.Go(func() { w.sweepEvery(bgCtx) })
	return func() { cancel(); loops.Wait() }
}

// receiver is the state of Run's receive loop: the slots of the photos in
// hand (at most Concurrency), the goroutines handling them, and the counts
// of failed and empty polls.
type receiver struct {
	w   *Worker
	ctl *control
	// workCtx is what photos in hand run under: it outlives the soft stop
	// until the grace period ends.
	workCtx    context.Context
	slots      chan struct{}
	inHand     sync.WaitGroup
	failures   int // receives failed in a row
	emptyPolls int // drained polls in a row (Drain)
}

// run is Run's receive loop: it takes messages while ctx lasts, the fleet is
// not paused and no dependency is down, and starts a goroutine for each. It
// returns at the soft stop, or with Drain once the queue stays empty.
func (r *receiver) run(ctx context.Context) {
	for {
		n, ok := r.reserve(ctx)
		if !ok {
			return
		}
		msgs, err := r.poll(ctx, n)
		switch {
		case (ctx.Err() != nil || r.ctl.paused.Load()) && len(msgs) > 0:
			if !r.handBack(ctx, msgs) {
				return
			}
		case err != nil:
			if !r.backOff(ctx, err) {
				return
			}
		default:
			r.failures = 0
			r.w.gate.succeeded(failure.SQS)
			r.start(msgs)
			if r.drained(ctx, len(msgs)) {
				return
			}
		}
	}
}

// reserve waits until the worker may take messages, then takes a slot for
// each message it will ask for: one when throttled, else every free slot up
// to a batch. It returns false once ctx ends.
func (r *receiver) reserve(ctx context.Context) (n int, ok bool) {
	// A paused fleet takes no message, nor does a worker waiting for a
	// dependency to come back.
	if !r.ctl.waitUnpaused(ctx) || !r.w.gate.wait(ctx, r.w.cfg.DependencyProbe) {
		return 0, false
	}
	// Take the slots first, so that the worker never holds a message it
	// cannot start on at once.
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}
	n = 1
	if r.ctl.limited.Load() {
		// Throttled: one token, one message, so that messages never wait
		// in hand for the limiter.
		if err := r.ctl.limiter.Wait(ctx); err != nil {
			<-r.slots
			return 0, false
		}
		return n, true
	}
	for n < queue.MaxBatch {
		select {
		case r.slots <- struct{}{}:
			n++
		default:
			return n, true
		}
	}
	return n, true
}

// poll receives up to n messages and gives back the slots of those it did
// not get.
func (r *receiver) poll(ctx context.Context, n int) ([]queue.Received, error) {
	wait := r.w.cfg.WaitTime
	if r.w.cfg.Drain {
		wait = min(wait, 2*time.Second)
	}
	// The receive is not cancelled by a stop: a long poll abandoned by its
	// client can still be handed messages by the server, which would then
	// stay hidden for the whole visibility timeout. It is allowed to finish
	// (at most WaitTime) and what it brings after a stop is released.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), wait+30*time.Second)
	msgs, err := r.w.queue.Receive(rctx, n, wait, r.w.cfg.VisibilityTimeout)
	rcancel()
	for i := len(msgs); i < n; i++ {
		<-r.slots
	}
	return msgs, err
}

// handBack returns messages that arrived after a stop or a pause (the long
// poll was out) and their slots. It returns false at a stop.
func (r *receiver) handBack(ctx context.Context, msgs []queue.Received) (goOn bool) {
	why := "pause"
	if ctx.Err() != nil {
		why = "shutdown"
	}
	r.w.releaseAll(msgs, why)
	for range msgs {
		<-r.slots
	}
	return ctx.Err() == nil
}

// backOff waits after a failed receive, longer after each one in a row (at
// most 30s), and tells the gate when SQS seems down. It returns false once
// ctx ends.
func (r *receiver) backOff(ctx context.Context, err error) (goOn bool) {
	if ctx.Err() != nil {
		return false
	}
	if dep, outage := failure.Dependency(err); outage {
		r.w.gate.failed(dep)
	}
	r.failures++
	pause := min(time.Duration(r.failures)*time.Second, 30*time.Second)
	r.w.log.Warn("receive failed; retrying", zap.Error(err), zap.Duration("pause", pause))
	select {
	case <-time.After(pause):
		return true
	case <-ctx.Done():
		return false
	}
}

// start hands each received message to its own goroutine, which gives its
// slot back when the photo is settled.
func (r *receiver) start(msgs []queue.Received) {
	w := r.w
	if len(msgs) > 0 {
		w.cfg.Metrics.Add(observe.Batches, 1)
		w.cfg.Metrics.Add(observe.Received, float64(len(msgs)))
	}
	for _, m := range msgs {
		r.inHand.Add(1)
		w.cfg.Metrics.Set(observe.InFlightG, float64(w.inflight.Add(1)))
		go func() {
			defer r.inHand.Done()
			defer func() { <-r.slots }()
			defer func() { w.cfg.Metrics.Set(observe.InFlightG, float64(w.inflight.Add(-1))) }()
			w.handle(r.workCtx, m)
		}()
	}
}

// drained reports, with Drain, whether the queue has now stayed empty for
// DrainPolls polls in a row (see Worker.drained); a paused fleet never drains.
func (r *receiver) drained(ctx context.Context, received int) bool {
	if !r.w.cfg.Drain || r.ctl.paused.Load() {
		return false
	}
	done, err := r.w.drained(ctx, received)
	if err != nil {
		r.w.log.Warn("read queue depth", zap.Error(err))
	}
	if done {
		r.emptyPolls++
	} else {
		r.emptyPolls = 0
	}
	if r.emptyPolls >= r.w.cfg.DrainPolls {
		r.w.log.Info("queue drained")
		return true
	}
	return false
}

// finish is Run's last phase: the photos in hand may finish for up to
// ShutdownGrace; then the rest are abandoned (hardStop), which releases their
// messages, and the worker's totals are logged.
func (w *Worker) finish(inHand *sync.WaitGroup, hardStop context.CancelFunc) {
	done := make(chan struct{})
	go func() { inHand.Wait(); close(done) }()
	if n := w.inflight.Load(); n > 0 {
		w.log.Info("stopping: finishing photos in hand", zap.Int64("in_flight", n), zap.Duration("grace", w.cfg.ShutdownGrace))
	}
	select {
	case <-done:
	case <-time.After(w.cfg.ShutdownGrace):
		w.log.Warn("grace period over: abandoning unfinished photos and releasing their messages", zap.Int64("in_flight", w.inflight.Load()))
		hardStop()
		<-done
	}
	s := w.Stats()
	w.log.Info("worker stopped", zap.Int64("migrated", s.Migrated), zap.Int64("already_done", s.AlreadyDone),
		zap.Int64("archived", s.Archived), zap.Int64("dead_lettered", s.DeadLettered), zap.Int64("retried", s.Retried),
		zap.Int64("released", s.Released), zap.Int64("objects_copied", s.ObjectsCopied), zap.Int64("bytes_copied", s.BytesCopied))
}

// probeKey is what the S3 probe of a down dependency reads (a HEAD that
// answers 404 when S3 is up) and asks to copy (refused with 404).
const probeKey = "users/.keymigrate-readyz"

// s3Answers is the gate's probe of S3: it is up when it answers a read and
// the two copies a photo's move makes (objstore.ServesCopies, which writes
// nothing). A read alone is not enough: in a partial outage S3 answers every
// read while every copy fails, and a gate that reopened on a read would take
// the photos again at every probe, each delivery a ledger attempt, until
// they lost the outage exemption (maxOutageAttempts) and were dead-lettered
// as broken.
func (w *Worker) s3Answers(ctx context.Context) error {
	if _, err := w.objects.Exists(ctx, probeKey); err != nil {
		return err
	}
	return w.objects.ServesCopies(ctx, probeKey)
}

// releaseAll hands back messages received during a stop or a pause.
func (w *Worker) releaseAll(msgs []queue.Received, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range msgs {
		msg, _ := queue.Decode(m.Body)
		w.handBack(ctx, m, msg, 0, why)
		w.stats.released.Add(1)
	}
}

// drained reports whether the last poll was empty, nothing is in hand here,
// the queue holds no message at all (visible, in flight elsewhere, or
// delayed: in-flight messages elsewhere may still come back), and the ledger
// has no photo still waiting for one.
func (w *Worker) drained(ctx context.Context, received int) (bool, error) {
	if received > 0 || w.inflight.Load() > 0 {
		return false, nil
	}
	d, err := w.queue.Depth(ctx)
	if err != nil {
		return false, err
	}
	if d.Total() > 0 {
		return false, nil
	}
	// The queue is empty, but the ledger may still have photos whose
	// messages were lost: the sweeper will enqueue them again.
	open, err := w.store.PhotoMoveCountOpen(ctx)
	if err != nil {
		return false, err
	}
	return open == 0, nil
}

// sweepEvery runs the lost-message sweeper every SweepInterval until ctx
// ends. Every worker sweeps; concurrent sweeps pick disjoint photos.
func (w *Worker) sweepEvery(ctx context.Context) {
	every(ctx, w.cfg.SweepInterval, func() {
		if len(w.gate.waitingFor()) > 0 {
			return
		}
		n, err := rescue.Sweep(ctx, w.store, w.queue, rescue.Options{After: w.cfg.SweepAfter, Live: rescue.LiveWindow(w.cfg.ControlInterval)})
		if err != nil && ctx.Err() == nil {
			w.log.Warn("look for lost messages", zap.Error(err))
		}
		if n > 0 {
			w.cfg.Metrics.Add(observe.RescuedCtr, float64(n))
			w.log.Warn("enqueued again photos whose messages were lost", zap.Int("photos", n))
		}
	})
}
