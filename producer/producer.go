// Package producer finds the photos that still reference legacy keys and
// enqueues one message per photo, resumably.
//
// The scan is keyset-paginated on the primary key, so memory and query cost
// stay flat whatever the table size. Progress is checkpointed in the ledger
// after every group of batches: a producer stopped at any point and restarted
// with the same run resends at most one group (duplicates are harmless: workers
// are idempotent) and never skips a photo.
package producer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/keylayout"
	"github.com/keymigrate/keymigrate/internal/ledger"
	"github.com/keymigrate/keymigrate/internal/observe"
	"github.com/keymigrate/keymigrate/internal/queue"
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
	// GroupSize is the number of photos between checkpoints (a multiple of 10;
	// the batches of a group are sent concurrently).
	GroupSize int
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
	// AfterGroup, if set, is called after each checkpointed group (tests use it
	// to interrupt a run at a known point).
	AfterGroup func(enqueuedSoFar int64)
	// Metrics, if set, counts found and enqueued photos.
	Metrics *observe.Metrics
	// Selection is the subset of legacy photos to enqueue (nil: all of them).
	// Owners, SamplePercent and Limit are used as they are; PhotosFrom.Path
	// names the list, which Run checks and records by hash.
	Selection *ledger.Selection
}

func (c *Config) defaults() {
	if c.PageSize <= 0 {
		c.PageSize = 1000
	}
	if c.GroupSize <= 0 {
		c.GroupSize = 100
	}
	c.GroupSize = max(queue.MaxBatch, c.GroupSize/queue.MaxBatch*queue.MaxBatch)
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
	// out (failed in the ledger, without --retry-failed); Ownerless those among
	// the enqueued that have no owner (workers archive them).
	Found     int64 `json:"found"`
	Enqueued  int64 `json:"enqueued"`
	Skipped   int64 `json:"skipped"`
	Ownerless int64 `json:"ownerless"`
	// RunTotals are the run's counts over all its invocations.
	RunTotals ledger.RunCounts `json:"run_totals"`
	// Selection is what the run selects (nil: every legacy photo);
	// LimitReached says the run stopped at its --limit.
	Selection    *ledger.Selection `json:"selection,omitempty"`
	LimitReached bool              `json:"limit_reached,omitempty"`
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
	after := ""
	if p.cfg.DryRun {
		s.RunID = p.cfg.RunID
	} else {
		id := p.cfg.RunID
		if p.cfg.NewRun && id == "" {
			id = NewRunID(time.Now())
		}
		run, resumed, err := p.store.StartRun(ctx, id, NewRunID(time.Now()), sel)
		if err != nil {
			return s, err
		}
		s.RunID, s.Resumed, after = run.ID, resumed, run.Checkpoint
		s.RunTotals = run.Counts
		p.log.Info("producer run", zap.String("run_id", run.ID), zap.Bool("resumed", resumed), zap.String("checkpoint", run.Checkpoint), zap.Stringer("selection", sel))
	}
	selector, err := p.store.NewSelector(ctx, sel)
	if err != nil {
		return s, err
	}
	var src source = &scanSource{store: p.store, sel: selector, after: after, size: p.cfg.PageSize}
	if sel != nil && sel.PhotosFrom != nil {
		ls, err := openListSource(p.store, selector, sel.PhotosFrom.Path, after, p.cfg.PageSize)
		if err != nil {
			return s, err
		}
		defer ls.close()
		src = ls
	}
	limit := int64(-1) // photos the run may still enqueue; -1: no limit
	if sel != nil && sel.Limit > 0 {
		limit = max(0, sel.Limit-s.RunTotals.Enqueued)
	}
	lastLog := time.Now()
	for limit != 0 {
		page, marks, end, done, err := src.next(ctx)
		if err != nil {
			return s, err
		}
		for start := 0; start < len(page) && limit != 0; start += p.cfg.GroupSize {
			stop := min(start+p.cfg.GroupSize, len(page))
			add, mark, err := p.group(ctx, s.RunID, page[start:stop], marks[start:stop], limit)
			s.Found += add.Found
			s.Enqueued += add.Enqueued
			s.Skipped += add.Skipped
			s.Ownerless += add.Ownerless
			if err != nil {
				return s, err
			}
			s.RunTotals = s.RunTotals.Add(add)
			p.cfg.Metrics.Add(observe.FoundCtr, float64(add.Found))
			p.cfg.Metrics.Add(observe.EnqueuedCtr, float64(add.Enqueued))
			after = mark
			if limit > 0 {
				limit -= add.Enqueued
			}
			if p.cfg.AfterGroup != nil {
				p.cfg.AfterGroup(s.Enqueued)
			}
		}
		if limit != 0 && end != "" && end != after && !p.cfg.DryRun {
			// A chunk of a photo list with no legacy photo at its end: record
			// that its lines were read.
			if err := p.store.AdvanceCheckpoint(ctx, s.RunID, end, ledger.RunCounts{}); err != nil {
				return s, err
			}
			after = end
		}
		if time.Since(lastLog) >= p.cfg.ProgressEvery {
			lastLog = time.Now()
			p.log.Info("producer progress", zap.String("run_id", s.RunID), zap.Int64("found", s.Found),
				zap.Int64("enqueued", s.Enqueued), zap.Int64("skipped", s.Skipped), zap.String("checkpoint", after))
		}
		if done {
			break
		}
	}
	s.LimitReached = limit == 0
	if !p.cfg.DryRun {
		if err := p.store.FinishRun(ctx, s.RunID); err != nil {
			return s, err
		}
	}
	return s, nil
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
			return nil, fmt.Errorf("--owner %q: %w; give the owner's id exactly as photos.owner_id holds it", o, err)
		}
	}
	out.Owners = ledger.NormaliseOwners(sel.Owners)
	if sel.Limit < 0 {
		return nil, fmt.Errorf("--limit %d: give a positive number of photos (0: no limit)", sel.Limit)
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

// group handles one checkpointed group: decide, record, send, checkpoint. It
// enqueues at most limit photos (-1: no limit) and returns the checkpoint of
// the last photo it considered.
func (p *Producer) group(ctx context.Context, runID string, photos []ledger.Photo, marks []string, limit int64) (ledger.RunCounts, string, error) {
	var c ledger.RunCounts
	ids := make([]string, len(photos))
	for i, ph := range photos {
		ids[i] = ph.ID
	}
	states, err := p.store.PhotoStates(ctx, ids)
	if err != nil {
		return c, "", err
	}
	send := make([]ledger.Photo, 0, len(photos))
	mark := marks[len(marks)-1]
	for i, ph := range photos {
		if limit >= 0 && int64(len(send)) == limit {
			mark = marks[i-1]
			break
		}
		c.Found++
		if states[ph.ID] == "failed" && !p.cfg.RetryFailed {
			c.Skipped++
			if p.cfg.DryRun {
				fmt.Fprintf(p.cfg.Out, "skip    %s  (failed earlier; --retry-failed re-enqueues it)\n", ph.ID)
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
	if p.cfg.DryRun {
		c.Enqueued = int64(len(send))
		return c, mark, nil
	}
	// Record first: a worker must never see a message whose ledger row it
	// could then overwrite with an older state.
	if err := p.store.RecordEnqueued(ctx, runID, send); err != nil {
		return c, "", err
	}
	g, gctx := errgroup.WithContext(ctx)
	for start := 0; start < len(send); start += queue.MaxBatch {
		batch := send[start:min(start+queue.MaxBatch, len(send))]
		bodies := make([]string, len(batch))
		for i, ph := range batch {
			bodies[i] = queue.Encode(queue.Message{PhotoID: ph.ID, RunID: runID})
		}
		g.Go(func() error { return p.queue.SendBatch(gctx, bodies, p.cfg.SendRetry) })
	}
	if err := g.Wait(); err != nil {
		var be *queue.BatchError
		if errors.As(err, &be) {
			return c, "", fmt.Errorf("enqueue photos after %s: %w (the checkpoint was not advanced: rerun the producer to resume)", photos[0].ID, err)
		}
		return c, "", fmt.Errorf("enqueue photos: %w", err)
	}
	c.Enqueued = int64(len(send))
	if err := p.store.AdvanceCheckpoint(ctx, runID, mark, c); err != nil {
		return c, "", err
	}
	return c, mark, nil
}
