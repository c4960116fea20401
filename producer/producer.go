// Package producer finds the photos that still reference legacy keys and
// enqueues one message per photo, resumably.
//
// The scan is keyset-paginated on the primary key, so memory and query cost
// stay flat whatever the table size. It is a pipeline: the next page is read
// while the current one is recorded and sent, several groups of photos are
// sent at once, and the run's checkpoint advances in order behind them, after
// every group whose messages were all sent. A producer stopped by a signal
// sends and checkpoints what it had recorded before it exits, so running it
// again resends nothing; one killed outright resends at most the groups that
// were in flight (duplicates are harmless: workers are idempotent) and never
// skips a photo. Several producers can share one run, each on its own shard
// (a range of photos.id) with its own checkpoint.
package producer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// Config tunes a producer.
type Config struct {
	// RunID names the run to resume or create; empty resumes the newest
	// unfinished run or starts a new one.
	RunID string
	// NewRun starts a new run even if an unfinished one exists (after the queue
	// lost messages, say: a new run rescans every legacy photo).
	NewRun bool
	// PageSize is the number of rows read per query.
	PageSize int
	// GroupSize is the number of photos between checkpoints (a multiple of 10).
	GroupSize int
	// InFlight is how many groups are recorded and being sent at once; the
	// checkpoint advances in order behind them.
	InFlight int
	// SendConcurrency is how many SendMessageBatch calls run at once.
	SendConcurrency int
	// Shard and Shards make this producer one of Shards producers of a run,
	// the one for range Shard (0 <= Shard < Shards); Shards 0: not sharded.
	Shard, Shards int
	// DryRun sends and records nothing; it prints what would be enqueued.
	DryRun bool
	// RetryFailed also enqueues photos the ledger records as failed.
	RetryFailed bool
	// SendRetry bounds the time spent retrying one batch.
	SendRetry time.Duration
	// Out receives dry-run lines.
	Out io.Writer
	// ProgressEvery is how often progress is logged.
	ProgressEvery time.Duration
	// Metrics, if set, counts found and enqueued photos.
	Metrics *observe.Metrics
	// Selection is the subset of legacy photos to enqueue (nil: all of them).
	// Owners, SamplePercent and Limit are used as they are; PhotosFrom.Path
	// names the list, which Run checks and records by hash.
	Selection *ledger.Selection
}

// The defaults of Config (docs/performance-database.md measures them).
const (
	DefaultPageSize        = 1000
	DefaultGroupSize       = 500
	DefaultInFlight        = 4
	DefaultSendConcurrency = 16
)

func (c *Config) defaults() {
	if c.PageSize <= 0 {
		c.PageSize = DefaultPageSize
	}
	if c.GroupSize <= 0 {
		c.GroupSize = DefaultGroupSize
	}
	c.GroupSize = max(queue.MaxBatch, c.GroupSize/queue.MaxBatch*queue.MaxBatch)
	if c.InFlight <= 0 {
		c.InFlight = DefaultInFlight
	}
	if c.SendConcurrency <= 0 {
		c.SendConcurrency = DefaultSendConcurrency
	}
	if c.SendRetry <= 0 {
		c.SendRetry = time.Minute
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 10 * time.Second
	}
}

// Producer enqueues legacy photos.
type Producer struct {
	store *ledger.Store
	queue *queue.Queue
	log   *zap.Logger
	cfg   Config
	// afterGroup, if set, is called after each checkpointed group with the
	// photos enqueued so far. Only the producer's tests set it (through
	// SetAfterGroup in export_test.go), to interrupt a run at a known point;
	// it is not part of Config, which a user fills in.
	afterGroup func(enqueuedSoFar int64)
}

// New builds a producer.
func New(store *ledger.Store, q *queue.Queue, log *zap.Logger, cfg Config) *Producer {
	cfg.defaults()
	return &Producer{store: store, queue: q, log: log, cfg: cfg}
}

// Summary is what a producer invocation did.
type Summary struct {
	RunID   string `json:"run_id"`
	Resumed bool   `json:"resumed"`
	DryRun  bool   `json:"dry_run"`
	// Found counts legacy photos seen; Enqueued those sent; Skipped those left
	// out (failed in the ledger, without RetryFailed); Ownerless those among
	// the enqueued that have no owner (workers archive them).
	Found     int64 `json:"found"`
	Enqueued  int64 `json:"enqueued"`
	Skipped   int64 `json:"skipped"`
	Ownerless int64 `json:"ownerless"`
	// RunTotals are the run's counts over all its invocations.
	RunTotals ledger.RunCounts `json:"run_totals"`
	// Selection is what the run selects (nil: every legacy photo);
	// LimitReached says the run stopped at its limit.
	Selection    *ledger.Selection `json:"selection,omitempty"`
	LimitReached bool              `json:"limit_reached,omitempty"`
	// Shard is "i/n" for one shard of a sharded run; ShardRange its ids.
	// RunFinished says every shard of the run is done (always true of a
	// finished run that is not sharded).
	Shard       string `json:"shard,omitempty"`
	ShardRange  string `json:"shard_range,omitempty"`
	RunFinished bool   `json:"run_finished"`
	// Resent counts photos an earlier invocation of the run recorded and
	// the selection no longer reaches (deleted, archived or rewritten by
	// the application since), sent again on resuming: the earlier one may
	// have been killed before sending them.
	Resent int64 `json:"resent,omitempty"`
}

// NewRunID makes a sortable, unique run id.
func NewRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "run-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Run scans and enqueues until every selected legacy photo was handled (or the
// selection's limit was reached) or ctx ends. An interrupted run returns the
// summary so far and ctx's error; running again resumes it.
func (p *Producer) Run(ctx context.Context) (Summary, error) {
	s := Summary{DryRun: p.cfg.DryRun}
	sel, err := p.selection(ctx)
	if err != nil {
		return s, err
	}
	s.Selection = sel
	sharded := p.cfg.Shards > 0
	if err := p.checkShard(sel); err != nil {
		return s, err
	}
	if sharded {
		s.Shard = fmt.Sprintf("%d/%d", p.cfg.Shard, p.cfg.Shards)
	}
	sc, shardDone, err := p.begin(ctx, sel, &s)
	if err != nil || shardDone {
		return s, err
	}
	if sharded {
		s.ShardRange = fmt.Sprintf("[%s, %s)", or(sc.lower, "start"), or(sc.upper, "end"))
	}
	selector, src, closeSrc, err := p.open(ctx, sel, sc)
	if err != nil {
		return s, err
	}
	defer closeSrc()
	resent := map[string]bool{} // sent by resendUnreached in this invocation
	if !p.cfg.DryRun {
		if s.Resent, err = p.resendUnreached(ctx, selector, s.RunID, sc.lower, sc.upper, resent); err != nil {
			return s, err
		}
	}
	limit := int64(-1) // photos the run may still enqueue; -1: no limit
	if sel != nil && sel.Limit > 0 {
		limit = max(0, sel.Limit-s.RunTotals.Enqueued)
	}
	if p.cfg.DryRun {
		return p.dryRun(ctx, src, limit, s)
	}
	s, limit, err = p.pipeline(ctx, src, limit, s)
	if err != nil {
		return s, err
	}
	if err := ctx.Err(); err != nil {
		return s, err
	}
	if s.Resumed {
		// Once more, now that the scan is over and before the run is
		// finished: a photo the earlier invocation recorded and never sent
		// whose row the application deleted (archived, rewrote) after the
		// pass above, but before the scan reached it, was reached by
		// neither, and would stay enqueued with no message (the 30-minute
		// soak, seed 249867: a deleted photo left enqueued, attempts 2).
		n, err := p.resendUnreached(ctx, selector, s.RunID, sc.lower, sc.upper, resent)
		s.Resent += n
		if err != nil {
			return s, err
		}
	}
	s.LimitReached = limit == 0
	return p.finish(ctx, sel, s)
}

// checkShard refuses a shard outside its run's count, and a sharded run of a
// photo list or with a limit.
func (p *Producer) checkShard(sel *ledger.Selection) error {
	if p.cfg.Shards <= 0 {
		return nil
	}
	if p.cfg.Shard < 0 || p.cfg.Shard >= p.cfg.Shards {
		return &InvalidShardError{Index: p.cfg.Shard, Count: p.cfg.Shards}
	}
	if sel != nil && (sel.PhotosFrom != nil || sel.Limit > 0) {
		return ErrShardWithListOrLimit
	}
	return nil
}

// scope is what one invocation scans: its shard's range of photos.id (empty:
// unbounded) and the checkpoint it resumes after.
type scope struct {
	lower, upper string
	after        string
}

// begin is Run's first phase: it starts or resumes the run (and joins this
// shard to it) and says where this invocation scans; a dry run records
// nothing and only finds its shard's range. shardDone says this shard of the
// run was already finished: there is nothing to do.
func (p *Producer) begin(ctx context.Context, sel *ledger.Selection, s *Summary) (_ scope, shardDone bool, _ error) {
	var sc scope
	sharded := p.cfg.Shards > 0
	if p.cfg.DryRun {
		s.RunID = p.cfg.RunID
		if sharded {
			bounds, err := p.store.PhotoShardBounds(ctx, p.cfg.Shards)
			if err != nil {
				return sc, false, err
			}
			sc.lower, sc.upper = ledger.ShardRange(bounds, p.cfg.Shard)
		}
		return sc, false, nil
	}
	id := p.cfg.RunID
	if p.cfg.NewRun && id == "" {
		if sharded {
			return sc, false, ErrNewShardedRunWithoutID
		}
		id = NewRunID(time.Now())
	}
	run, resumed, err := p.store.RunStart(ctx, id, NewRunID(time.Now()), sel)
	if err != nil {
		return sc, false, err
	}
	s.RunID, s.Resumed, sc.after = run.ID, resumed, run.Checkpoint
	s.RunTotals = run.Counts
	switch {
	case sharded:
		sh, err := p.store.RunShardJoin(ctx, run.ID, p.cfg.Shard, p.cfg.Shards)
		if err != nil {
			return sc, false, err
		}
		sc.after, sc.lower, sc.upper, s.Resumed = sh.Checkpoint, sh.Lower, sh.Upper, sh.Checkpoint != ""
		if sh.FinishedAt != nil {
			p.log.Info("producer shard already finished", zap.String("run_id", run.ID), zap.String("shard", s.Shard))
			return sc, true, nil
		}
	case run.Shards > 0:
		return sc, false, &ledger.ShardCountError{RunID: run.ID, Recorded: run.Shards}
	}
	p.log.Info("producer run", zap.String("run_id", run.ID), zap.Bool("resumed", s.Resumed), zap.String("checkpoint", sc.after),
		zap.Stringer("selection", sel), zap.String("shard", s.Shard), zap.String("lower", sc.lower), zap.String("upper", sc.upper))
	return sc, false, nil
}

// open is Run's second phase: it builds the selection's query and the source
// of candidate photos (the photos table in id order, or a photo list in file
// order) from the scope's checkpoint. closeSrc releases the source.
func (p *Producer) open(ctx context.Context, sel *ledger.Selection, sc scope) (_ *ledger.Selector, _ source, closeSrc func(), _ error) {
	selector, err := p.store.NewSelector(ctx, sel)
	if err != nil {
		return nil, nil, nil, err
	}
	if sel != nil && sel.PhotosFrom != nil {
		ls, err := openListSource(p.store, selector, sel.PhotosFrom.Path, sc.after, p.cfg.PageSize)
		if err != nil {
			return nil, nil, nil, err
		}
		return selector, ls, ls.close, nil
	}
	return selector, &scanSource{store: p.store, sel: selector, lower: sc.lower, upper: sc.upper, after: sc.after, size: p.cfg.PageSize}, func() {}, nil
}

// finish is Run's last phase, once the source is exhausted (or the limit
// reached): it marks this shard, or the run, finished; a finished run over
// every photo reached every legacy row, so it records a census with none
// pending (status counts pending photos from it on).
func (p *Producer) finish(ctx context.Context, sel *ledger.Selection, s Summary) (Summary, error) {
	var err error
	if p.cfg.Shards > 0 {
		if s.RunFinished, err = p.store.RunShardFinish(ctx, s.RunID, p.cfg.Shard); err != nil || !s.RunFinished {
			return s, err
		}
	} else {
		s.RunFinished = true
		if err := p.store.RunFinish(ctx, s.RunID); err != nil {
			return s, err
		}
	}
	if sel.All() && !s.LimitReached {
		return s, p.store.CensusRecordRunEnd(ctx, s.RunID)
	}
	return s, nil
}

// resendUnreached sends the photos this run recorded as enqueued that the
// selection no longer reaches. A producer killed outright leaves up to its
// in-flight window recorded but unsent; the resumed scan resends the rest of
// that window itself, but not a photo the application has deleted, archived
// or rewritten in between, which would otherwise wait for the sweeper.
// Photos in sent are left out (already sent by this invocation), and those
// sent are added to it.
func (p *Producer) resendUnreached(ctx context.Context, sel *ledger.Selector, runID, lower, upper string, sent map[string]bool) (int64, error) {
	var n int64
	err := sel.Unreached(ctx, p.store, ledger.UnreachedQuery{RunID: runID, Lower: lower, Upper: upper, Page: 1000}, func(all []string) error {
		ids := make([]string, 0, len(all))
		for _, id := range all {
			if !sent[id] {
				ids = append(ids, id)
			}
		}
		for start := 0; start < len(ids); start += queue.MaxBatch {
			batch := ids[start:min(start+queue.MaxBatch, len(ids))]
			bodies := make([]string, len(batch))
			for i, id := range batch {
				bodies[i] = queue.Encode(queue.Message{PhotoID: id, RunID: runID})
			}
			if err := p.queue.SendBatch(ctx, bodies, p.cfg.SendRetry); err != nil {
				return fmt.Errorf("send again the photos of run %s the scan no longer reaches: %w (rerun the producer to resume)", runID, err)
			}
			for _, id := range batch {
				sent[id] = true
			}
			n += int64(len(batch))
		}
		return nil
	})
	if n > 0 {
		p.log.Info("producer resent photos recorded by an earlier invocation that the scan no longer reaches", zap.String("run_id", runID), zap.Int64("photos", n))
	}
	return n, err
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// dryRun prints what a run would enqueue, sending and recording nothing.
func (p *Producer) dryRun(ctx context.Context, src source, limit int64, s Summary) (Summary, error) {
	for limit != 0 {
		page, marks, _, done, err := src.next(ctx)
		if err != nil {
			return s, err
		}
		for start := 0; start < len(page) && limit != 0; start += p.cfg.GroupSize {
			stop := min(start+p.cfg.GroupSize, len(page))
			send, c, _, err := p.decide(ctx, s.RunID, page[start:stop], marks[start:stop], limit)
			if err != nil {
				return s, err
			}
			c.Enqueued = int64(len(send))
			s.Found, s.Enqueued, s.Skipped, s.Ownerless = s.Found+c.Found, s.Enqueued+c.Enqueued, s.Skipped+c.Skipped, s.Ownerless+c.Ownerless
			if limit > 0 {
				limit -= c.Enqueued
			}
		}
		if done {
			break
		}
	}
	s.LimitReached = limit == 0
	return s, nil
}

// pending is a group of photos recorded as enqueued whose messages are being
// sent; the checkpoint may pass it once done is closed and no batch failed.
type pending struct {
	mark   string
	counts ledger.RunCounts
	left   atomic.Int32
	failed atomic.Bool
	done   chan struct{}
}

func newPending(mark string, c ledger.RunCounts, batches int) *pending {
	g := &pending{mark: mark, counts: c, done: make(chan struct{})}
	g.left.Store(int32(batches))
	if batches == 0 {
		close(g.done)
	}
	return g
}

func (g *pending) batchDone(err error) {
	if err != nil {
		g.failed.Store(true)
	}
	if g.left.Add(-1) == 0 {
		close(g.done)
	}
}

type batchJob struct {
	g      *pending
	bodies []string
	first  string
}

// lanes connect the stages of a run's pipeline: admit records each group and
// hands it to the checkpointer (inflight, in order) and its batches to the
// senders.
type lanes struct {
	runID string
	// slots bounds the window: a group takes a slot before it is recorded
	// and gives it back once it is checkpointed, so at most InFlight groups
	// are recorded and not yet checkpointed, which is what a producer killed
	// outright resends.
	slots    chan struct{}
	inflight chan *pending
	batches  chan batchJob
}

// slot waits for room in the window. It returns false, holding no slot, once
// ctx ends or work was stopped by an error.
func (l lanes) slot(ctx, work context.Context) bool {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	case <-work.Done():
		return false
	}
	if ctx.Err() != nil || work.Err() != nil {
		<-l.slots // nothing will be checkpointed for it
		return false
	}
	return true
}

// pipeline reads pages (one ahead), records and sends groups (InFlight at
// once, SendConcurrency batches at once) and advances the checkpoint in
// order. When ctx ends, no new group is started, and the groups already
// recorded are still sent and checkpointed before it returns: an interrupted
// run resends nothing. A send error stops everything; the checkpoint stays
// before the first group that was not sent completely.
func (p *Producer) pipeline(ctx context.Context, src source, limit int64, s Summary) (Summary, int64, error) {
	work, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stop(nil)
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		stop(err)
	}
	l := lanes{
		runID:    s.RunID,
		slots:    make(chan struct{}, p.cfg.InFlight),
		inflight: make(chan *pending, p.cfg.InFlight),
		batches:  make(chan batchJob, p.cfg.SendConcurrency),
	}
	senders := p.startSenders(work, l.batches, fail)
	checkpointed := make(chan struct{})
	go func() { defer close(checkpointed); p.checkpoint(work, l, &s, fail) }()

	admitErr := p.admit(ctx, work, src, &limit, l)
	close(l.batches)
	senders.Wait()
	close(l.inflight)
	<-checkpointed
	if firstErr != nil {
		return s, limit, firstErr
	}
	return s, limit, admitErr
}

// startSenders starts the pipeline's SendConcurrency senders: each sends
// batches until batches is closed, and marks each batch done in its group.
// A failed batch stops the pipeline (fail).
func (p *Producer) startSenders(work context.Context, batches <-chan batchJob, fail func(error)) *sync.WaitGroup {
	var senders sync.WaitGroup
	for range p.cfg.SendConcurrency {
		senders.Go(func() {
			for b := range batches {
				err := p.queue.SendBatch(work, b.bodies, p.cfg.SendRetry)
				if err != nil {
					var be *queue.BatchError
					if errors.As(err, &be) {
						err = fmt.Errorf("enqueue photos from %s: %w (the checkpoint was not advanced past them: rerun the producer to resume)", b.first, err)
					} else {
						err = fmt.Errorf("enqueue photos: %w", err)
					}
					fail(err)
				}
				b.g.batchDone(err)
			}
		})
	}
	return &senders
}

// checkpoint is the pipeline's checkpointer: it takes the groups in the order
// they were recorded, waits until each is sent, advances the checkpoint past
// it and adds its counts to s, and gives its slot back. Once a group failed
// (or work was stopped) it only gives slots back: the checkpoint stays before
// the first group that was not sent completely.
func (p *Producer) checkpoint(work context.Context, l lanes, s *Summary, fail func(error)) {
	broken := false
	lastLog := time.Now()
	for g := range l.inflight {
		<-g.done
		if broken || g.failed.Load() || work.Err() != nil {
			broken = true
			<-l.slots
			continue
		}
		if err := p.advance(work, s.RunID, g.mark, g.counts); err != nil {
			fail(err)
			broken = true
			<-l.slots
			continue
		}
		s.Found += g.counts.Found
		s.Enqueued += g.counts.Enqueued
		s.Skipped += g.counts.Skipped
		s.Ownerless += g.counts.Ownerless
		s.RunTotals = s.RunTotals.Add(g.counts)
		p.cfg.Metrics.Add(observe.FoundCtr, float64(g.counts.Found))
		p.cfg.Metrics.Add(observe.EnqueuedCtr, float64(g.counts.Enqueued))
		if p.afterGroup != nil {
			p.afterGroup(s.Enqueued)
		}
		if time.Since(lastLog) >= p.cfg.ProgressEvery {
			lastLog = time.Now()
			p.log.Info("producer progress", zap.String("run_id", s.RunID), zap.String("shard", s.Shard), zap.Int64("found", s.Found),
				zap.Int64("enqueued", s.Enqueued), zap.Int64("skipped", s.Skipped), zap.String("checkpoint", g.mark))
		}
		<-l.slots
	}
}

// admit reads the source and, group by group and in order, decides what to
// send, records it, hands the group to the checkpointer and its batches to
// the senders. It stops at the end of the source, at the limit, when ctx
// ends or when work was stopped by an error.
func (p *Producer) admit(ctx, work context.Context, src source, limit *int64, l lanes) error {
	pages, stopReading := readAhead(ctx, src)
	defer stopReading()
	after := ""
	for pg := range pages {
		if pg.err != nil {
			return pg.err
		}
		for start := 0; start < len(pg.photos) && *limit != 0; start += p.cfg.GroupSize {
			if !l.slot(ctx, work) {
				return nil
			}
			stop := min(start+p.cfg.GroupSize, len(pg.photos))
			mark, err := p.admitGroup(work, l, pg.photos[start:stop], pg.marks[start:stop], limit)
			if err != nil {
				return err
			}
			after = mark
		}
		if *limit != 0 && pg.end != "" && pg.end != after {
			// A chunk of a photo list with no legacy photo at its end: record
			// that its lines were read.
			if !l.slot(ctx, work) {
				return nil
			}
			l.inflight <- newPending(pg.end, ledger.RunCounts{}, 0)
			after = pg.end
		}
		if pg.done || *limit == 0 {
			return nil
		}
	}
	return nil
}

// admitGroup decides, records and hands on one group, whose slot admit took
// (and which it gives back if it fails), and counts it against the limit. It
// returns the group's checkpoint.
func (p *Producer) admitGroup(work context.Context, l lanes, photos []ledger.Photo, marks []string, limit *int64) (string, error) {
	// Once admitted, a group is decided, recorded, sent and checkpointed
	// under work, which ctx's end does not interrupt: a statement
	// cancelled halfway may have committed all the same.
	send, c, mark, err := p.decide(work, l.runID, photos, marks, *limit)
	if err != nil {
		<-l.slots
		return "", err
	}
	// Record first: a worker must never see a message whose ledger row
	// it could then overwrite with an older state.
	if err := p.store.PhotoMoveRecordEnqueued(work, l.runID, send); err != nil {
		<-l.slots
		return "", err
	}
	c.Enqueued = int64(len(send))
	if *limit > 0 {
		*limit -= c.Enqueued
	}
	n := (len(send) + queue.MaxBatch - 1) / queue.MaxBatch
	g := newPending(mark, c, n)
	l.inflight <- g
	for b := range n {
		batch := send[b*queue.MaxBatch : min((b+1)*queue.MaxBatch, len(send))]
		bodies := make([]string, len(batch))
		for i, ph := range batch {
			bodies[i] = queue.Encode(queue.Message{PhotoID: ph.ID, RunID: l.runID})
		}
		l.batches <- batchJob{g: g, bodies: bodies, first: batch[0].ID}
	}
	return mark, nil
}

// readPage is one page of the source, as readAhead hands it to admit.
type readPage struct {
	photos []ledger.Photo
	marks  []string
	end    string
	done   bool
	err    error
}

// readAhead reads the source on its own goroutine, one page ahead of admit
// (the next page is read while this one is sent), until the source is
// exhausted or fails. stop ends the reader and waits for it: the source (a
// photo list's file) is closed once Run returns.
func readAhead(ctx context.Context, src source) (pages <-chan readPage, stop func()) {
	readCtx, cancelRead := context.WithCancel(ctx)
	out := make(chan readPage, 1)
	go func() {
		defer close(out)
		for {
			var pg readPage
			pg.photos, pg.marks, pg.end, pg.done, pg.err = src.next(readCtx)
			select {
			case out <- pg:
			case <-readCtx.Done():
				return
			}
			if pg.done || pg.err != nil {
				return
			}
		}
	}()
	return out, func() {
		cancelRead()
		for range out {
		}
	}
}

// advance moves the run's (or this shard's) checkpoint.
func (p *Producer) advance(ctx context.Context, runID, mark string, c ledger.RunCounts) error {
	if p.cfg.Shards > 0 {
		return p.store.RunShardAdvance(ctx, runID, p.cfg.Shard, mark, c)
	}
	return p.store.RunAdvance(ctx, runID, mark, c)
}

// selection validates the configured selection and, for a photo list, reads
// the whole file first: a malformed line refuses the run before anything is
// enqueued.
func (p *Producer) selection(ctx context.Context) (*ledger.Selection, error) {
	sel := p.cfg.Selection
	if sel.All() {
		return nil, nil
	}
	out := *sel
	for _, o := range sel.Owners {
		if err := keylayout.ValidateID(o); err != nil {
			return nil, &InvalidOwnerError{Owner: o, Err: err}
		}
	}
	out.Owners = ledger.NormaliseOwners(sel.Owners)
	if sel.Limit < 0 {
		return nil, &InvalidLimitError{Limit: sel.Limit}
	}
	if sel.SamplePercent != 0 {
		if _, err := ledger.SampleThreshold(sel.SamplePercent); err != nil {
			return nil, err
		}
	}
	if sel.PhotosFrom != nil {
		idType, err := p.store.PhotoIDType(ctx)
		if err != nil {
			return nil, err
		}
		list, err := ReadPhotoList(sel.PhotosFrom.Path, idType)
		if err != nil {
			return nil, err
		}
		out.PhotosFrom = list
	}
	return &out, nil
}

// decide reads the ledger states of one group and returns the photos to send
// (at most limit of them, -1: no limit), the counts (Enqueued left to the
// caller) and the checkpoint of the last photo it considered.
func (p *Producer) decide(ctx context.Context, runID string, photos []ledger.Photo, marks []string, limit int64) ([]ledger.Photo, ledger.RunCounts, string, error) {
	var c ledger.RunCounts
	ids := make([]string, len(photos))
	for i, ph := range photos {
		ids[i] = ph.ID
	}
	states, err := p.store.PhotoMoveStates(ctx, runID, ids)
	if err != nil {
		return nil, c, "", err
	}
	send := make([]ledger.Photo, 0, len(photos))
	mark := marks[len(marks)-1]
	for i, ph := range photos {
		if limit >= 0 && int64(len(send)) == limit {
			mark = marks[i-1]
			break
		}
		c.Found++
		if states[ph.ID] == ledger.StateFailed && !p.cfg.RetryFailed {
			c.Skipped++
			if p.cfg.DryRun {
				fmt.Fprintf(p.cfg.Out, "skip    %s  (failed earlier; --retry-failed re-enqueues it)\n", ph.ID)
			}
			continue
		}
		if states[ph.ID] == ledger.RolledBackSinceRun {
			// A rollback is final until a new run: this one started before it.
			c.Skipped++
			if p.cfg.DryRun {
				fmt.Fprintf(p.cfg.Out, "skip    %s  (rolled back after this run started; a new run enqueues it)\n", ph.ID)
			}
			continue
		}
		send = append(send, ph)
		if ph.OwnerID == nil {
			c.Ownerless++
		}
		if p.cfg.DryRun {
			note := ""
			if ph.OwnerID == nil {
				note = "  (no owner: a worker will archive it)"
			}
			fmt.Fprintf(p.cfg.Out, "enqueue %s  %s%s\n", ph.ID, ph.Original, note)
		}
	}
	return send, c, mark, nil
}
