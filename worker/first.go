package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// moveFirst plans and copies a photo on the copy-first path in as few round
// trips as it can (issue 20, docs/performance.md "Round trips per photo").
// The objects the row names (its key columns) and the one the layout names
// (meta/{job_id}.json) need no read to be planned: their intents are
// recorded, then they are copied in the same round trip as the listing of
// animated/{job_id}/. A copy of a missing metadata object answers NoSuchKey,
// the discovery the HEAD of the careful plan makes: that move is dropped and
// its intent retired as a stale one is (see settle). The listed animations'
// intents are recorded once the listing answered, and they are copied as
// soon as they are (a second round trip only for a photo that has any). The
// source reads after the copies (readSources) and the swap follow as on every
// path.
//
// settle joins the discards this started in the background, the intents the
// plan no longer wants (Stale) and those of dropped moves, so that they run
// beside the source reads: it must be called, and answer nil, before the
// photo is committed. It is safe to call more than once.
func (w *Worker) moveFirst(ctx context.Context, p ledger.Photo, jobID string) (plan Plan, gens map[string]int64, results []moveResult, settle func() error, err error) {
	var bg errgroup.Group
	settle = sync.OnceValue(bg.Wait)
	plan, done, err := w.planStart(ctx, p, jobID, false)
	if err != nil {
		return plan, nil, nil, settle, err
	}
	if plan.JobID != "" {
		if meta := keylayout.LegacyMetadataKey(plan.JobID); !done[meta] {
			if err := plan.addMove(meta, nil, true); err != nil {
				return plan, nil, nil, settle, err
			}
		}
	}
	named := plan.Moves
	gens = map[string]int64{}
	if len(named) > 0 {
		// Recorded before any copy is sent (S1's discard claims and
		// generations rest on it). Stale is not acted on here: the
		// animations are not known yet.
		rec, err := w.recordIntentsKeeping(ctx, p, plan.JobID, named, nil)
		if err != nil {
			return plan, nil, nil, settle, err
		}
		for k, g := range rec.Gens {
			gens[k] = g
		}
	}

	var (
		keys    []string
		listErr error
		listed  = make(chan struct{})
	)
	if plan.JobID != "" {
		go func() {
			defer close(listed)
			keys, listErr = w.objects.List(ctx, keylayout.LegacyAnimationPrefix(plan.JobID))
		}()
	} else {
		close(listed)
	}
	run := w.newCopyRun(p, true)
	run.add(ctx, named)
	<-listed

	animErr := listErr
	var stale []ledger.ObjectMove
	if animErr == nil {
		stale, animErr = w.planAnimations(ctx, p, &plan, done, keys, gens)
	}
	if animErr != nil {
		// The copies under way are awaited and recorded (finish), so that
		// the photo dead-lettered for this can discard them.
		run.fail()
		_, _, err := run.finish(ctx)
		return plan, nil, nil, settle, errors.Join(animErr, err)
	}
	bg.Go(func() error { return w.discard(ctx, stale) })
	run.add(ctx, plan.Moves[len(named):])

	results, dropped, err := run.finish(ctx)
	if len(dropped) > 0 {
		gone := make(map[string]bool, len(dropped))
		for _, m := range dropped {
			gone[m.New] = true
		}
		kept := plan.Moves[:0:0]
		for _, m := range plan.Moves {
			if !gone[m.New] {
				kept = append(kept, m)
			}
		}
		plan.Moves = kept
		// The intent of a move whose source does not exist is retired as
		// a stale one is: discarded (its copy deleted only if one of an
		// earlier attempt is there, still keymigrate's), never committed.
		bg.Go(func() error { return w.retire(ctx, p.ID, gone) })
	}
	if err != nil {
		return plan, nil, nil, settle, err
	}
	return plan, gens, results, settle, nil
}

// planAnimations adds the listed animations to plan and records their
// intents, keeping those of the moves already planned, before any of their
// copies is sent. It returns the photo's open moves the whole plan no longer
// wants, for the caller to discard.
func (w *Worker) planAnimations(ctx context.Context, p ledger.Photo, plan *Plan, done map[string]bool, keys []string, gens map[string]int64) ([]ledger.ObjectMove, error) {
	named := len(plan.Moves)
	keep := make([]string, named)
	for i, m := range plan.Moves {
		keep[i] = m.New
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

// retire discards the photo's open moves to the new keys in gone, whose
// sources were just found missing. A move with no ETag and no pin recorded
// is claimed and settled without a read: discard would read its copy, and,
// finding one, its source, to recognise keymigrate's bytes as the source's,
// which a missing source can never do (the copy is left alone either way,
// as a stale move of a vanished source is today). Any other goes through
// discard, which deletes a copy still holding a recorded ETag.
func (w *Worker) retire(ctx context.Context, photoID string, gone map[string]bool) error {
	open, err := w.store.ObjectMoveListOpen(ctx, photoID)
	if err != nil {
		return err
	}
	var (
		read  []ledger.ObjectMove
		blind []ledger.DiscardClaim
	)
	for _, o := range open {
		switch {
		case !gone[o.NewKey]:
		case o.ETag == "" && len(o.Pins) == 0:
			blind = append(blind, ledger.DiscardClaim{NewKey: o.NewKey})
		default:
			read = append(read, o)
		}
	}
	if len(blind) > 0 {
		if err := w.discardClaims(ctx, photoID, blind); err != nil {
			return err
		}
	}
	return w.discard(ctx, read)
}
