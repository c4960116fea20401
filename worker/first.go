package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// moveFirst plans and copies a photo on the copy-first path in as few round
// trips as it can (issue 20, docs/performance.md "Round trips per photo").
//
// Round 1: the objects the row names (its key columns) need no read to be
// planned: their intents are recorded, then they are copied first, at once
// with the listing of animated/{job_id}/ and a HEAD of the object the layout
// names, meta/{job_id}.json. A metadata that does not exist (404) is simply
// not planned: no intent is recorded for it and nothing is left to retire.
// Its HEAD costs a read where copying it first would cost a failed
// CopyObject (priced as a COPY, 12.5 times a HEAD) for the seven photos in
// ten that have none.
//
// Round 2: once the listing and the HEAD answered, the intents of the listed
// animations and of the metadata found are recorded together (keeping the
// named objects', see planAnimations): an intent is always in the ledger
// before its copy is sent (S1), and one found missing never is. The
// animations are copied first; the metadata's copy is pinned to its HEAD's
// ETag (x-amz-copy-source-if-match), as the careful path's copy is, and sent
// at once in the background (a lateCopy), so that it shares a round trip
// with the animations' copies or, for a photo without animations, with the
// source reads before the swap (readSources joins it). Where destinations
// are read first, each named object's copy waits for its destination's HEAD
// (round 2), and the metadata's destination is read only once its HEAD found
// it, in round 2 beside the named copies, its copy in round 3: a photo
// without metadata (seven in ten) then pays no HEAD of a destination it will
// never write, and the photo no round trip more (the copy goes with the
// animations' copies or with the source reads).
//
// A pinned copy needs no read of its source after it: the copy succeeds only
// if the source still has the ETag its HEAD read, so it proves, as of the
// moment it is made, the very bytes the HEAD described, and it is verified
// from its own response against that HEAD (verifyCopy), as on the careful
// path. Sent at once with the source reads (S3, no animation), it proves
// its source as late as those reads prove theirs, so it needs no separate
// recheck. Otherwise it is one round trip earlier than the reads (it goes
// with the animations' copies): a rewrite in place of meta/{job_id}.json
// within that round trip is not seen before the swap. No column points at
// the metadata, and cleanup compares every legacy object's ETag with the one
// its copy was made from before deleting it, so such a rewrite keeps the
// legacy object (reported), never loses it.
//
// settle joins the discards this started in the background (the intents the
// plan no longer wants, Stale) and the metadata's copy, so that they run
// beside the source reads: it must be called, and answer nil, before the
// photo is committed. It is safe to call more than once. The metadata's
// copy's own error is reported by readSources, not by settle.
func (w *Worker) moveFirst(ctx context.Context, p ledger.Photo, jobID string) (plan Plan, gens map[string]int64, results []moveResult, settle func() error, err error) {
	var (
		bg   errgroup.Group
		late *lateCopy
	)
	settle = sync.OnceValue(func() error {
		err := bg.Wait()
		if late != nil {
			<-late.done
		}
		return err
	})
	plan, done, err := w.planStart(ctx, p, jobID, false)
	if err != nil {
		return plan, nil, nil, settle, err
	}
	named := plan.Moves
	gens = map[string]int64{}
	if len(named) > 0 {
		// Recorded before any copy is sent (S1's discard claims and
		// generations rest on it). Stale is not acted on here: the
		// animations and the metadata are not known yet.
		rec, err := w.recordIntentsKeeping(ctx, p, plan.JobID, named, nil)
		if err != nil {
			return plan, nil, nil, settle, err
		}
		for k, g := range rec.Gens {
			gens[k] = g
		}
	}

	// The metadata's move, if the ledger does not record it as done.
	var meta *Move
	if k := keylayout.LegacyMetadataKey(plan.JobID); plan.JobID != "" && !done[k] {
		m, err := plan.derived(k)
		if err != nil {
			return plan, nil, nil, settle, err
		}
		meta = &m
	}
	var (
		reads            sync.WaitGroup
		keys             []string
		metaSrc          objstore.Info
		listErr, metaErr error
	)
	if plan.JobID != "" {
		reads.Go(func() { keys, listErr = w.objects.List(ctx, keylayout.LegacyAnimationPrefix(plan.JobID)) })
	}
	if meta != nil {
		reads.Go(func() { metaSrc, metaErr = w.objects.Head(ctx, meta.Old) })
	}
	run := w.newCopyRun(p, true)
	run.add(ctx, named)
	reads.Wait()

	var found *objstore.Info // the metadata's HEAD; nil if there is none
	switch {
	case meta == nil:
	case errors.Is(metaErr, objstore.ErrNotFound):
		metaErr = nil // no metadata: nothing to plan, record or retire
	case metaErr == nil:
		found = &metaSrc
	}
	animErr := errors.Join(listErr, metaErr)
	var stale []ledger.ObjectMove
	if animErr == nil {
		stale, animErr = w.planAnimations(ctx, p, &plan, done, keys, found, gens)
	}
	if animErr != nil {
		// The copies under way are awaited and recorded (finish), so that
		// the photo dead-lettered for this can discard them.
		run.fail()
		_, err := run.finish(ctx)
		return plan, nil, nil, settle, errors.Join(animErr, err)
	}
	bg.Go(func() error { return w.discard(ctx, stale) })
	var anims []Move
	for _, m := range plan.Moves[len(named):] {
		if m.Source != nil {
			// The metadata, the one move planned from a HEAD: not sent
			// once a copy failed (the run sends no more either).
			if !run.failed.Load() {
				late = w.startLateCopy(ctx, p, m)
			}
			continue
		}
		anims = append(anims, m)
	}
	run.add(ctx, anims)

	results, err = run.finish(ctx)
	if err != nil {
		return plan, nil, nil, settle, err
	}
	if late != nil {
		results = append(results, moveResult{late: late})
	}
	return plan, gens, results, settle, nil
}

// lateCopy is the metadata's copy on the copy-first path, sent in the
// background once its intent is recorded (moveFirst), pinned to the HEAD
// made with the listing, its ETag recorded and the copy verified before done
// is closed.
type lateCopy struct {
	done chan struct{}
	r    moveResult
	err  error
}

// startLateCopy sends m's copy, pinned to m.Source, in the background,
// right after a HEAD of its destination where the server does not enforce
// conditional copies (the window between that read and the copy is one round
// trip, as for every other object). As any careful copy, its ETag is
// recorded before it is sent where it can be known (F12), and the ETag its
// write returned right after it; it is verified from its own response.
func (w *Worker) startLateCopy(ctx context.Context, p ledger.Photo, m Move) *lateCopy {
	l := &lateCopy{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var (
			dst    objstore.Info
			dstErr error
		)
		if !w.objects.ConditionalCopy() {
			dst, dstErr = w.objects.Head(ctx, m.New)
		}
		start := time.Now()
		r, c, err := w.copyRead(ctx, p, m, *m.Source, dst, dstErr)
		if err != nil || c == nil {
			l.r, l.err = r, err
			return
		}
		w.cfg.Metrics.Observe(observe.CopyHist, time.Since(start).Seconds())
		if _, err := w.recordCopies(ctx, p, []*copied{c}); err != nil {
			l.err = err
			return
		}
		l.r, l.err = w.verifyCopy(ctx, p, c)
	}()
	return l
}

// planAnimations adds the metadata found (meta, its HEAD; nil if none) and
// the listed animations to plan and records their intents, keeping those of
// the moves already planned, before any of their copies is sent. It returns
// the photo's open moves the whole plan no longer wants, for the caller to
// discard (an earlier attempt's intent of a metadata since deleted among
// them).
func (w *Worker) planAnimations(ctx context.Context, p ledger.Photo, plan *Plan, done map[string]bool, keys []string, meta *objstore.Info, gens map[string]int64) ([]ledger.ObjectMove, error) {
	named := len(plan.Moves)
	keep := make([]string, named)
	for i, m := range plan.Moves {
		keep[i] = m.New
	}
	if meta != nil {
		if err := plan.add(meta.Key, meta); err != nil {
			return nil, err
		}
	}
	for _, k := range keys {
		if done[k] {
			continue
		}
		if err := plan.add(k, nil); err != nil {
			return nil, err
		}
	}
	rec, err := w.recordIntentsKeeping(ctx, p, plan.JobID, plan.Moves[named:], keep)
	if err != nil {
		return nil, err
	}
	for k, g := range rec.Gens {
		gens[k] = g
	}
	return rec.Stale, nil
}

// recordIntentsKeeping records the intents of moves, keeping those of keep,
// and deals with the planned keys under another attempt's unsettled discard
// as planMoves does: it takes them over and completes them (with Stale, then
// discarded at once) or returns a transient error. Otherwise Stale is left
// to the caller.
func (w *Worker) recordIntentsKeeping(ctx context.Context, p ledger.Photo, jobID string, moves []Move, keep []string) (ledger.RecordedIntents, error) {
	rec, err := w.store.ObjectMoveRecordIntentsKeeping(ctx, p.ID, jobID, intents(moves), keep)
	if err != nil || len(rec.Claimed) == 0 {
		return rec, err
	}
	if err := w.discard(ctx, rec.Claimed); err != nil {
		return rec, err
	}
	rec, err = w.store.ObjectMoveRecordIntentsKeeping(ctx, p.ID, jobID, intents(moves), keep)
	if err != nil {
		return rec, err
	}
	if len(rec.Claimed) > 0 {
		return rec, fmt.Errorf("photo %s: a discard of %s by another attempt is in flight; retrying later", p.ID, rec.Claimed[0].NewKey)
	}
	return rec, nil
}
