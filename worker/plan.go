package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/keymigrate/keymigrate/internal/pipeline/failure"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Move is one object to copy from its legacy key to its user-scoped key.
type Move struct {
	Kind keylayout.Kind
	Old  string
	New  string
	// Source, when set, is the HEAD of Old that planning already made (the
	// metadata, found by HEAD of its derived key): the copy uses it instead of
	// asking S3 again. It is as good as a fresh one, since the copy is pinned
	// to its ETag and fails if the object changed since.
	Source *objstore.Info
	// redo makes the copy replace keymigrate's own earlier copy at New even
	// if it looks faithful: a copy made first that its source's read did not
	// prove (passState).
	redo bool
}

// Plan is everything a photo's migration will do.
type Plan struct {
	Photo   ledger.Photo
	OwnerID string
	JobID   string
	Moves   []Move
	// New are the row's key columns after the swap.
	New ledger.Keys
	// RowChanges is true when at least one key column changes (a swap is
	// needed); false when only animations or metadata move.
	RowChanges bool
}

// planRow plans the moves of a row's key columns. It is pure: the rest of the
// plan (metadata, animations) needs S3.
func planRow(p ledger.Photo) (Plan, error) {
	if p.OwnerID == nil {
		return Plan{}, errors.New("planRow: photo has no owner") // callers archive first
	}
	owner := *p.OwnerID
	if err := keylayout.ValidateID(owner); err != nil {
		return Plan{}, failure.Permanent(failure.InvalidOwner, fmt.Errorf("photo %s: owner: %w", p.ID, err))
	}
	if err := keylayout.ValidateID(p.ID); err != nil {
		return Plan{}, failure.Permanent(failure.UnknownPhoto, fmt.Errorf("photo id: %w", err))
	}
	plan := Plan{Photo: p, OwnerID: owner, New: ledger.Keys{Original: p.Original, Processed: p.Processed, Thumbnail: p.Thumbnail}}
	columns := []struct {
		name string
		key  *string
		want keylayout.Kind
		set  func(string)
	}{
		{"original_key", &p.Original, keylayout.KindOriginal, func(k string) { plan.New.Original = k }},
		{"processed_key", p.Processed, keylayout.KindRestored, func(k string) { plan.New.Processed = &k }},
		{"thumbnail_key", p.Thumbnail, keylayout.KindThumbnail, func(k string) { plan.New.Thumbnail = &k }},
	}
	for _, c := range columns {
		if c.key == nil {
			continue
		}
		if keylayout.IsUserScoped(*c.key) {
			// Already moved (or uploaded under Phase 1). It must still be this
			// owner's: a row pointing into another user's prefix is refused.
			if err := keylayout.CheckUserKey(*c.key, owner); err != nil {
				return Plan{}, failure.Permanent(failure.UnrecognisedKey, fmt.Errorf("photo %s: %s: %w", p.ID, c.name, err))
			}
			continue
		}
		l, err := keylayout.ParseLegacy(*c.key)
		if err != nil {
			return Plan{}, failure.Permanent(failure.UnrecognisedKey, fmt.Errorf("photo %s: %s: %w", p.ID, c.name, err))
		}
		if l.Kind != c.want {
			return Plan{}, failure.Permanentf(failure.UnrecognisedKey, "photo %s: %s holds a %s key %q, want a %s key", p.ID, c.name, l.Kind, *c.key, c.want)
		}
		if plan.JobID != "" && plan.JobID != l.JobID {
			return Plan{}, failure.Permanentf(failure.UnrecognisedKey, "photo %s: its keys name two jobs, %s and %s", p.ID, plan.JobID, l.JobID)
		}
		plan.JobID = l.JobID
		newKey, err := l.UserScoped(owner, p.ID)
		if err != nil {
			return Plan{}, failure.Permanent(failure.UnrecognisedKey, fmt.Errorf("photo %s: %s: %w", p.ID, c.name, err))
		}
		c.set(newKey)
		plan.Moves = append(plan.Moves, Move{Kind: l.Kind, Old: *c.key, New: newKey})
		plan.RowChanges = true
	}
	return plan, nil
}

// plan completes planRow with the photo's metadata and animations, which no
// column references: metadata is found by HEAD of its derived key, animations
// by listing the job's prefix. jobID comes from the row's legacy keys, or, for
// a row already swapped, from the ledger.
//
// A move the ledger records as committed for this photo is never planned
// again for a swapped row: if its new copy is gone, the application deleted
// it (a user deleting an animation) and that deletion is final. Only repair,
// which an operator asks for explicitly, copies missing objects again.
func (w *Worker) plan(ctx context.Context, p ledger.Photo, ledgerJobID string, repair bool) (Plan, error) {
	plan, done, err := w.planStart(ctx, p, ledgerJobID, repair)
	if err != nil || plan.JobID == "" {
		return plan, err
	}
	// Two prefixes, so two requests; made at once, one round trip.
	var (
		wg              sync.WaitGroup
		meta            objstore.Info
		keys            []string
		metaErr, keyErr error
	)
	metaKey := keylayout.LegacyMetadataKey(plan.JobID)
	wg.Go(func() { meta, metaErr = w.objects.Head(ctx, metaKey) })
	wg.Go(func() { keys, keyErr = w.objects.List(ctx, keylayout.LegacyAnimationPrefix(plan.JobID)) })
	wg.Wait()
	if errors.Is(metaErr, objstore.ErrNotFound) {
		metaErr = nil
	} else if metaErr == nil && !done[metaKey] {
		if err := plan.add(metaKey, &meta); err != nil {
			return Plan{}, err
		}
	}
	if err := errors.Join(metaErr, keyErr); err != nil {
		return Plan{}, err
	}
	for _, k := range keys {
		if done[k] {
			continue
		}
		if err := plan.add(k, nil); err != nil {
			return Plan{}, err
		}
	}
	return plan, nil
}

// planStart is the part of plan that needs no S3 request: the row's moves,
// the job, and (for a row already swapped) the legacy keys whose moves the
// ledger records as committed (done), with the repairs an operator asked for.
func (w *Worker) planStart(ctx context.Context, p ledger.Photo, ledgerJobID string, repair bool) (Plan, map[string]bool, error) {
	plan, err := planRow(p)
	if err != nil {
		return Plan{}, nil, err
	}
	if plan.JobID == "" {
		plan.JobID = ledgerJobID
	}
	var done map[string]bool
	if !plan.RowChanges {
		objs, err := w.store.ObjectMoveListOfPhoto(ctx, p.ID)
		if err != nil {
			return Plan{}, nil, err
		}
		done = make(map[string]bool, len(objs))
		for _, o := range objs {
			done[o.OldKey] = true
		}
		if repair {
			if err := w.planRepairs(ctx, &plan, objs); err != nil {
				return Plan{}, nil, err
			}
		}
	}
	return plan, done, nil
}

// planRepairs adds the ledger's committed moves whose new copy is missing, on
// an operator's explicit request. It never repairs a copy the application has
// moved on from: a column that no longer points at the copy's key, or a copy
// outside the row's owner's prefix (the photo changed hands).
func (w *Worker) planRepairs(ctx context.Context, plan *Plan, objs []ledger.ObjectMove) error {
	columns := map[string]bool{plan.Photo.Original: true}
	for _, k := range []*string{plan.Photo.Processed, plan.Photo.Thumbnail} {
		if k != nil {
			columns[*k] = true
		}
	}
	for _, o := range objs {
		if o.DeletedAt != nil || o.NewDeletedAt != nil || o.Superseded || keylayout.CheckUserKey(o.NewKey, plan.OwnerID) != nil {
			continue
		}
		kind := keylayout.Kind(o.Kind)
		if kind != keylayout.KindMetadata && kind != keylayout.KindAnimation && !columns[o.NewKey] {
			continue
		}
		ok, err := w.objects.Exists(ctx, o.NewKey)
		if err != nil {
			return err
		}
		if !ok {
			plan.Moves = append(plan.Moves, Move{Kind: kind, Old: o.OldKey, New: o.NewKey})
		}
	}
	return nil
}

// add plans the move of a derived (unreferenced) legacy object.
func (p *Plan) add(key string, src *objstore.Info) error {
	m, err := p.derived(key)
	if err != nil {
		return err
	}
	for _, x := range p.Moves {
		if x.New == m.New {
			return nil // already planned as a repair
		}
	}
	m.Source = src
	p.Moves = append(p.Moves, m)
	return nil
}

// derived is the move of a derived (unreferenced) legacy object of the
// photo's job, not yet planned.
func (p *Plan) derived(key string) (Move, error) {
	l, err := keylayout.ParseLegacy(key)
	if err != nil {
		// An object under the job's prefix that the layout does not know would be
		// left behind, invisible to the app after the migration: stop and let an
		// operator look.
		return Move{}, failure.Permanent(failure.UnrecognisedKey, fmt.Errorf("photo %s: %w", p.Photo.ID, err))
	}
	if l.JobID != p.JobID {
		return Move{}, failure.Permanentf(failure.UnrecognisedKey, "photo %s: %s belongs to job %s, not %s", p.Photo.ID, key, l.JobID, p.JobID)
	}
	newKey, err := l.UserScoped(p.OwnerID, p.Photo.ID)
	if err != nil {
		return Move{}, failure.Permanent(failure.UnrecognisedKey, fmt.Errorf("photo %s: %w", p.Photo.ID, err))
	}
	return Move{Kind: l.Kind, Old: key, New: newKey}, nil
}
