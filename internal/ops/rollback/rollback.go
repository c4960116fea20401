// Package rollback undoes the migration of photos: it swaps their rows back to
// the keys the ledger recorded before the migration, with the same
// compare-and-swap discipline as the worker (a row the app changed since is
// reported, not overwritten), and restores archived photos' status.
//
// Rollback never discards what the application did since the migration: a
// photo whose column object the application rewrote (its new copy is not the
// one keymigrate made) or whose object a user deleted (rolling back would make
// the legacy object visible again) is refused, with the reason. Before any row
// is swapped back, every legacy object it will point at must exist: objects
// that cleanup already deleted are first copied back from their new key and
// verified. With DeleteNew the new copies are removed afterwards, each only
// while it is still keymigrate's own write (conditional on its ETag) and its
// legacy object exists.
//
// A worker holding a photo while it is rolled back cannot migrate it again
// (its swap re-checks the ledger), but rollback still waits until the fleet
// holds nothing, or refuses, unless forced.
package rollback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Options select what to roll back.
type Options struct {
	PhotoID   string // one photo
	All       bool   // or every migrated, cleaned or archived photo
	RunID     string // optionally only those of one run
	DeleteNew bool   // also delete the new copies
	DryRun    bool
	// Force rolls back even while workers hold photos.
	Force bool
	// Wait is how long to wait for the fleet to hold nothing before refusing.
	Wait time.Duration
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
	// Compacted counts the selected photos left alone because `migratectl
	// ledger compact` folded their records: past the rollback window.
	Compacted int64 `json:"compacted,omitempty"`
}

// ErrFleetBusy is returned when workers hold photos and neither Force nor a
// long enough Wait was given. Force is safe: a worker's swap re-checks the
// ledger and does not migrate a rolled-back photo again.
var ErrFleetBusy = errors.New("the fleet holds photos")

// ErrNothingSelected is returned when Options select neither a photo nor All.
var ErrNothingSelected = errors.New("no photo selected: give one photo, or all of them (optionally of one run)")

const page = 200

// Run rolls back the selected photos.
func Run(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options) (*Report, error) {
	if o.PhotoID == "" && !o.All {
		return nil, ErrNothingSelected
	}
	rep := &Report{DryRun: o.DryRun, Refused: []Refusal{}}
	if !o.DryRun && !o.Force {
		if err := waitIdle(ctx, st, o.Wait); err != nil {
			return rep, err
		}
	}
	after := ""
	done := 0
	for {
		batch, err := st.PhotoMoveRollbackCandidates(ctx, o.PhotoID, o.RunID, after, page)
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
	// Photos compacted by `migratectl ledger compact` are past the rollback
	// window: their object records are audit rows only, and a row swapped back
	// would point at legacy objects nobody can copy back from the ledger.
	compacted, err := st.AuditCountCompacted(ctx, o.PhotoID, o.RunID)
	if err != nil {
		return rep, err
	}
	rep.Compacted = compacted
	if o.PhotoID != "" && done == 0 {
		if compacted > 0 {
			return rep, fmt.Errorf("photo %s was compacted (migratectl ledger compact): it is cleaned and past the rollback window, and keymigrate can no longer roll it back", o.PhotoID)
		}
		return rep, fmt.Errorf("photo %s: the ledger has no migrated, cleaned or archived photo with this id", o.PhotoID)
	}
	return rep, nil
}

// waitIdle waits until no live worker reports a photo in hand, up to wait.
func waitIdle(ctx context.Context, st *ledger.Store, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		live, err := st.WorkerListLive(ctx, 10*time.Second)
		if err != nil {
			return err
		}
		held, workers := 0, 0
		for _, w := range live {
			if w.InFlight > 0 {
				held += w.InFlight
				workers++
			}
		}
		if held == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d workers hold %d photos after %s", ErrFleetBusy, workers, held, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// one rolls back one photo. An archived photo gets its status back
// (unarchive). A migrated one goes through four phases, any of which can
// refuse it (the reason goes to rep.Refused and the rollback goes on to the
// next photo): what the application did since the migration is checked
// (keptByTheApplication), its legacy objects are made to exist again
// (restoreLegacy), its row is swapped back (swapBack), and with DeleteNew its
// new copies are removed (deleteNewCopies). An error stops the rollback.
func one(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options, m ledger.PhotoMove, rep *Report) error {
	if m.State == ledger.StateArchived {
		return unarchive(ctx, st, o, m, rep)
	}
	// stop ends a phase that did not go through: an error stops the
	// rollback, a reason refuses the photo.
	stop := func(why string, err error) error {
		if err == nil {
			rep.Refused = append(rep.Refused, Refusal{PhotoID: m.PhotoID, Reason: why})
		}
		return err
	}
	if m.Old.Original == "" {
		return stop("the ledger has no pre-migration keys for this photo", nil)
	}
	objs, err := st.ObjectMoveListOfPhoto(ctx, m.PhotoID)
	if err != nil {
		return err
	}
	keepNew, why, err := keptByTheApplication(ctx, objects, objs)
	if err != nil || why != "" {
		return stop(why, err)
	}
	if o.DryRun {
		rep.WouldRollBack = append(rep.WouldRollBack, m.PhotoID)
		return nil
	}
	if why, err := restoreLegacy(ctx, st, objects, m, objs, rep); err != nil || why != "" {
		return stop(why, err)
	}
	if why, err := swapBack(ctx, st, m); err != nil || why != "" {
		return stop(why, err)
	}
	rep.RolledBack++
	if !o.DeleteNew {
		return nil
	}
	return deleteNewCopies(ctx, st, objects, m, objs, keepNew, rep)
}

// unarchive gives an archived photo its status back (or, dry, lists it),
// unless the application changed its row since it was archived.
func unarchive(ctx context.Context, st *ledger.Store, o Options, m ledger.PhotoMove, rep *Report) error {
	if o.DryRun {
		rep.WouldRollBack = append(rep.WouldRollBack, m.PhotoID)
		return nil
	}
	ok, err := st.PhotoMoveRollBack(ctx, m)
	if err != nil {
		return err
	}
	if !ok {
		rep.Refused = append(rep.Refused, Refusal{PhotoID: m.PhotoID, Reason: "the app changed the archived row since it was archived; left as it is"})
		return nil
	}
	rep.Unarchived++
	return nil
}

// keptByTheApplication reads every new copy of a photo and decides what the
// application did since the migration, which a rollback never undoes. A
// column's object it rewrote, or any object it deleted, refuses the rollback
// (why says so). A metadata or animation object it rewrote allows it (the
// application reads those at their user-scoped key whatever the row says),
// but must never be deleted: keepNew lists those and the application's own
// objects.
func keptByTheApplication(ctx context.Context, objects *objstore.Store, objs []ledger.ObjectMove) (keepNew map[string]bool, why string, err error) {
	keepNew = map[string]bool{}
	for _, obj := range objs {
		if obj.Superseded {
			keepNew[obj.NewKey] = true // the application's own object
			continue
		}
		if obj.NewDeletedAt != nil {
			continue
		}
		dst, err := objects.Head(ctx, obj.NewKey)
		if errors.Is(err, objstore.ErrNotFound) {
			return nil, fmt.Sprintf("the application deleted %s after the migration; rolling back would bring back %s", obj.NewKey, obj.OldKey), nil
		}
		if err != nil {
			return nil, "", err
		}
		if ok, differs := objstore.MatchesRecord(dst, objstore.Record{Size: obj.Size, ETag: obj.ETag, Algorithm: obj.ChecksumAlgorithm, Checksum: obj.Checksum}); !ok {
			if isColumn(obj.Kind) {
				return nil, fmt.Sprintf("the application rewrote %s after the migration (%s); rolling the row back to %s would discard its newer bytes", obj.NewKey, differs, obj.OldKey), nil
			}
			// The application reads the user-scoped metadata or animation
			// whatever the row says: rolling back is safe, deleting it is not.
			keepNew[obj.NewKey] = true
		}
	}
	return keepNew, "", nil
}

// restoreLegacy makes every legacy object the row will point at exist again
// before it does: what cleanup deleted is copied back from its verified new
// copy (counted in rep.Restored), and each legacy key of the row is then
// checked. why says what could not be restored.
func restoreLegacy(ctx context.Context, st *ledger.Store, objects *objstore.Store, m ledger.PhotoMove, objs []ledger.ObjectMove, rep *Report) (why string, err error) {
	for _, obj := range objs {
		if obj.DeletedAt == nil || obj.Superseded {
			continue
		}
		landed, err := copyBack(ctx, objects, obj)
		if landed {
			// The legacy key holds the copy's bytes again: recorded before
			// anything else may fail, so that the ledger never says cleanup
			// deleted an object that is there (cleanup never looks at a
			// deleted object again: it would stay for good, unaccounted).
			if merr := st.ObjectMoveMarkRestored(ctx, obj.NewKey); merr != nil {
				return "", errors.Join(merr, err)
			}
		}
		if err != nil {
			return fmt.Sprintf("cannot copy %s back to %s: %v", obj.NewKey, obj.OldKey, err), nil
		}
		rep.Restored++
	}
	for _, k := range []*string{&m.Old.Original, m.Old.Processed, m.Old.Thumbnail} {
		if k == nil {
			continue
		}
		ok, err := objects.Exists(ctx, *k)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("legacy object %s does not exist; the row keeps its new keys", *k), nil
		}
	}
	return "", nil
}

// swapBack points the photo's row at its legacy keys again, by
// compare-and-swap on the keys the migration gave it. why says why the row was
// left as it is.
func swapBack(ctx context.Context, st *ledger.Store, m ledger.PhotoMove) (why string, err error) {
	ok, err := st.PhotoMoveRollBack(ctx, m)
	if errors.Is(err, ledger.ErrLegacyDeleting) {
		return "cleanup is deleting this photo's legacy objects right now; run rollback again once it finished (it copies them back first)", nil
	}
	if err != nil {
		return "", err
	}
	if !ok {
		return "the app changed the row since the migration swapped it; left as it is", nil
	}
	return "", nil
}

// deleteNewCopies removes the new copies of a photo that was rolled back
// (counted in rep.DeletedNew), each only while it is still keymigrate's own
// write (conditional on its ETag) and its legacy object exists; the copies it
// keeps are reported in rep.Refused with the reason.
func deleteNewCopies(ctx context.Context, st *ledger.Store, objects *objstore.Store, m ledger.PhotoMove, objs []ledger.ObjectMove, keepNew map[string]bool, rep *Report) error {
	var deleted, kept []string
	for _, obj := range objs {
		if obj.NewDeletedAt != nil || obj.Superseded {
			continue
		}
		if keepNew[obj.NewKey] {
			kept = append(kept, obj.NewKey+" (the application rewrote it)")
			continue
		}
		ok, err := objects.Exists(ctx, obj.OldKey)
		if err != nil {
			return err
		}
		if !ok {
			// The row is rolled back, but this object's only copy is the new one.
			kept = append(kept, fmt.Sprintf("%s (its legacy object %s is missing)", obj.NewKey, obj.OldKey))
			continue
		}
		err = objects.DeleteIf(ctx, obj.NewKey, obj.ETag)
		switch {
		case err == nil, errors.Is(err, objstore.ErrNotFound):
			deleted = append(deleted, obj.NewKey)
		case errors.Is(err, objstore.ErrPrecondition):
			kept = append(kept, obj.NewKey+" (written by someone else since it was checked)")
		default:
			return err
		}
	}
	if err := st.ObjectMoveMarkNewDeleted(ctx, deleted); err != nil {
		return err
	}
	rep.DeletedNew += len(deleted)
	if len(kept) > 0 {
		rep.Refused = append(rep.Refused, Refusal{PhotoID: m.PhotoID, Reason: fmt.Sprintf("rolled back, but kept %d new copies: %s", len(kept), strings.Join(kept, "; "))})
	}
	return nil
}

// isColumn reports whether objects of kind are referenced by a row column.
func isColumn(kind string) bool {
	switch keylayout.Kind(kind) {
	case keylayout.KindOriginal, keylayout.KindRestored, keylayout.KindThumbnail:
		return true
	}
	return false
}

// copyBack copies a new object to its (deleted) legacy key and verifies it.
// landed says the legacy key holds the copy's bytes again (copied now, or
// found there), also when a later check failed: the caller records it.
func copyBack(ctx context.Context, objects *objstore.Store, obj ledger.ObjectMove) (landed bool, err error) {
	src, err := objects.Head(ctx, obj.NewKey)
	if err != nil {
		return false, err
	}
	if ok, why := objstore.MatchesRecord(src, objstore.Record{Size: obj.Size, ETag: obj.ETag, Algorithm: obj.ChecksumAlgorithm, Checksum: obj.Checksum}); !ok {
		return false, fmt.Errorf("the new copy is not what was moved: %s", why)
	}
	dst, err := objects.Head(ctx, obj.OldKey)
	switch {
	case err == nil:
		// Something is at the legacy key again: accept it only if it is the
		// same object, never overwrite it.
		if v, err := objects.Verify(ctx, src, dst); err != nil || !v.Equal {
			return false, fmt.Errorf("%s exists with other content; not overwritten", obj.OldKey)
		}
		return true, nil
	case !errors.Is(err, objstore.ErrNotFound):
		return false, err
	}
	// The copy asks for the checksum algorithm the legacy object had, which
	// the new copy may not carry (a multipart copy carries the server's
	// default): the legacy key gets back the object it held, not one the
	// next migration would copy with another algorithm (F13 in
	// docs/soak-findings.md).
	if _, err := objects.CopyBack(ctx, src, obj.OldKey, types.ChecksumAlgorithm(obj.SourceChecksumAlgorithm)); err != nil {
		// A copy whose answer was lost may have landed all the same (and
		// its retry, on a server that ignores conditional copies, then
		// finds the key there and refuses). Read the key: holding the very
		// object copied, as above, it has landed and is recorded; else the
		// copy's own error stands.
		dst, herr := objects.Head(ctx, obj.OldKey)
		if herr != nil {
			return false, err
		}
		if v, verr := objects.Verify(ctx, src, dst); verr != nil || !v.Equal {
			return false, err
		}
		return true, nil
	}
	// From here the object is there, whatever the checks below say.
	if dst, err = objects.Head(ctx, obj.OldKey); err != nil {
		return true, err
	}
	v, err := objects.Verify(ctx, src, dst)
	if err != nil {
		return true, err
	}
	if !v.Equal {
		return true, fmt.Errorf("the copied-back object differs: %s", v.Reason)
	}
	return true, nil
}
