// Package rollback undoes the migration of photos: it swaps their rows back to
// the keys the ledger recorded before the migration, with the same
// compare-and-swap discipline as the worker (a row the app changed since is
// reported, not overwritten), and restores archived photos' status.
//
// Before any row is swapped back, every legacy object it will point at must
// exist: objects that cleanup already deleted are first copied back from their
// new key and verified. With DeleteNew the new copies are removed afterwards,
// but only once their legacy objects are known to exist.
package rollback

import (
	"context"
	"errors"
	"fmt"

	"github.com/keymigrate/keymigrate/internal/ledger"
	"github.com/keymigrate/keymigrate/internal/objstore"
)

// Options select what to roll back.
type Options struct {
	PhotoID   string // one photo
	All       bool   // or every migrated, cleaned or archived photo
	RunID     string // optionally only those of one run
	DeleteNew bool   // also delete the new copies
	DryRun    bool
	// Progress, if set, is called after each photo.
	Progress func(done int)
}

// Refusal is a photo that was not rolled back, and why.
type Refusal struct {
	PhotoID string `json:"photo_id"`
	Reason  string `json:"reason"`
}

// Report says what a rollback did (or, dry, would do).
type Report struct {
	RolledBack    int       `json:"rolled_back"`
	Unarchived    int       `json:"unarchived"`
	Restored      int       `json:"legacy_objects_copied_back"`
	DeletedNew    int       `json:"new_copies_deleted"`
	Refused       []Refusal `json:"refused"`
	DryRun        bool      `json:"dry_run"`
	WouldRollBack []string  `json:"would_roll_back,omitempty"`
}

// ErrNothingSelected is returned when neither a photo nor --all was given.
var ErrNothingSelected = errors.New("say which photos to roll back: --photo ID, or --all (optionally with --run)")

const page = 200

// Run rolls back the selected photos.
func Run(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options) (*Report, error) {
	if o.PhotoID == "" && !o.All {
		return nil, ErrNothingSelected
	}
	rep := &Report{DryRun: o.DryRun, Refused: []Refusal{}}
	after := ""
	done := 0
	for {
		batch, err := st.RollbackCandidates(ctx, o.PhotoID, o.RunID, after, page)
		if err != nil {
			return rep, err
		}
		if len(batch) == 0 {
			break
		}
		for _, m := range batch {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			if err := one(ctx, st, objects, o, m, rep); err != nil {
				return rep, fmt.Errorf("photo %s: %w", m.PhotoID, err)
			}
			done++
			if o.Progress != nil {
				o.Progress(done)
			}
		}
		after = batch[len(batch)-1].PhotoID
	}
	if o.PhotoID != "" && done == 0 {
		return rep, fmt.Errorf("photo %s: the ledger has no migrated, cleaned or archived photo with this id", o.PhotoID)
	}
	return rep, nil
}

func one(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options, m ledger.PhotoMove, rep *Report) error {
	refuse := func(format string, args ...any) error {
		rep.Refused = append(rep.Refused, Refusal{PhotoID: m.PhotoID, Reason: fmt.Sprintf(format, args...)})
		return nil
	}
	if m.State == "archived" {
		if o.DryRun {
			rep.WouldRollBack = append(rep.WouldRollBack, m.PhotoID)
			return nil
		}
		ok, err := st.RollbackRow(ctx, m)
		if err != nil {
			return err
		}
		if !ok {
			return refuse("the app changed the archived row since it was archived; left as it is")
		}
		rep.Unarchived++
		return nil
	}
	if m.Old.Original == "" {
		return refuse("the ledger has no pre-migration keys for this photo")
	}
	objs, err := st.ObjectsOf(ctx, m.PhotoID)
	if err != nil {
		return err
	}
	if o.DryRun {
		rep.WouldRollBack = append(rep.WouldRollBack, m.PhotoID)
		return nil
	}
	// Every legacy object must exist before the row points at it again:
	// copy back what cleanup deleted, from the verified new copy.
	for _, obj := range objs {
		if obj.DeletedAt == nil {
			continue
		}
		if err := copyBack(ctx, objects, obj); err != nil {
			return refuse("cannot copy %s back to %s: %v", obj.NewKey, obj.OldKey, err)
		}
		if err := st.MarkRestored(ctx, obj.NewKey); err != nil {
			return err
		}
		rep.Restored++
	}
	for _, k := range []*string{&m.Old.Original, m.Old.Processed, m.Old.Thumbnail} {
		if k == nil {
			continue
		}
		ok, err := objects.Exists(ctx, *k)
		if err != nil {
			return err
		}
		if !ok {
			return refuse("legacy object %s does not exist; the row keeps its new keys", *k)
		}
	}
	ok, err := st.RollbackRow(ctx, m)
	if err != nil {
		return err
	}
	if !ok {
		return refuse("the app changed the row since the migration swapped it; left as it is")
	}
	rep.RolledBack++
	if !o.DeleteNew {
		return nil
	}
	var del []string
	for _, obj := range objs {
		ok, err := objects.Exists(ctx, obj.OldKey)
		if err != nil {
			return err
		}
		if !ok {
			// The row is rolled back, but this object's only copy is the new one.
			rep.Refused = append(rep.Refused, Refusal{PhotoID: m.PhotoID, Reason: fmt.Sprintf("kept new copy %s: its legacy object %s is missing", obj.NewKey, obj.OldKey)})
			continue
		}
		if obj.NewDeletedAt == nil {
			del = append(del, obj.NewKey)
		}
	}
	if len(del) == 0 {
		return nil
	}
	failed, err := objects.DeleteBatch(ctx, del)
	if err != nil {
		return err
	}
	var deleted []string
	for _, k := range del {
		if _, bad := failed[k]; !bad {
			deleted = append(deleted, k)
		}
	}
	if err := st.MarkNewDeleted(ctx, deleted); err != nil {
		return err
	}
	rep.DeletedNew += len(deleted)
	if len(failed) > 0 {
		return refuse("could not delete %d new copies: %v", len(failed), failed)
	}
	return nil
}

// copyBack copies a new object to its (deleted) legacy key and verifies it.
func copyBack(ctx context.Context, objects *objstore.Store, obj ledger.MovedObject) error {
	src, err := objects.Head(ctx, obj.NewKey)
	if err != nil {
		return err
	}
	if ok, why := objstore.MatchesRecord(src, objstore.Record{Size: obj.Size, ETag: obj.ETag, Algorithm: obj.ChecksumAlgorithm, Checksum: obj.Checksum}); !ok {
		return fmt.Errorf("the new copy is not what was moved: %s", why)
	}
	dst, err := objects.Head(ctx, obj.OldKey)
	switch {
	case err == nil:
		// Something is at the legacy key again: accept it only if it is the
		// same object, never overwrite it.
		if v, err := objects.Verify(ctx, src, dst); err != nil || !v.Equal {
			return fmt.Errorf("%s exists with other content; not overwritten", obj.OldKey)
		}
		return nil
	case !errors.Is(err, objstore.ErrNotFound):
		return err
	}
	if _, err := objects.Copy(ctx, src, obj.OldKey, ""); err != nil {
		return err
	}
	if dst, err = objects.Head(ctx, obj.OldKey); err != nil {
		return err
	}
	v, err := objects.Verify(ctx, src, dst)
	if err != nil {
		return err
	}
	if !v.Equal {
		return fmt.Errorf("the copied-back object differs: %s", v.Reason)
	}
	return nil
}
