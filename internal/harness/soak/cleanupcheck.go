package soak

import (
	"context"
	"fmt"
	"strings"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// What the final cleanup left of a legacy object, as cleanup_accounted
// classifies it (the report counts them).
const (
	legacyDeleted       = "deleted"                 // gone, with its deletion recorded
	legacyReferenced    = "kept_referenced"         // a row references a legacy key of its job
	legacyOrphan        = "kept_orphan"             // no photo ever had it: never moved, never deleted
	legacyNeverMoved    = "kept_never_moved"        // no committed copy to rely on (e.g. its photo was deleted before its migration)
	legacyCopyChanged   = "kept_copy_changed"       // the application rewrote, deleted or re-owned a copy: the legacy object is its only pristine copy
	legacyPhotoWithout  = "kept_photo_without_copy" // a live photo of its job has no committed copy of it
	legacyUnknownPhoto  = "kept_unknown_photo"      // a move of it belongs to a photo the model does not know
	cleanupPageKeys     = 1000
	cleanupCheckSamples = 3
)

// checkCleanup accounts for the final `cleanup --grace 0` both ways (issue
// 18): every legacy object the simulator wrote that is gone has a recorded
// deletion (cleanup's, or archived purge's); every recorded deletion is
// really gone; and every legacy object that no live row needs and that
// cleanup may delete by its own rules (docs/guarantees.md 1, 6 and 7: no row
// references its job, every live photo of the job has its own committed copy,
// intact — here: never rewritten, deleted or re-owned by the application —
// and the grace period, 0, is over) is gone, so a cleanup that deletes
// nothing fails. Orphans (objects no photo ever had) and objects no photo has
// a committed copy of (a photo deleted before its migration) are never
// deleted (docs/operating.md: orphans are "reported, kept"; cleanup deletes
// only what the ledger recorded as moved). The ledger is read through its
// Store methods; the bucket through one listing of the legacy prefixes.
func (r *Runner) checkCleanup(ctx context.Context, states map[string]appsim.PhotoState, rep *Report) error {
	rep.Legacy = map[string]int{}
	keys := r.sim.Model().LegacyKeys()
	present := map[string]bool{}
	for _, prefix := range verify.LegacyPrefixes {
		if err := r.env.Objects.ListEach(ctx, prefix, func(k string, _ int64, _ string) error {
			present[k] = true
			return nil
		}); err != nil {
			return fmt.Errorf("cleanup_accounted: list %s: %w", prefix, err)
		}
	}
	// Who had each legacy object, and which photos belong to each job.
	owners := map[string][]string{}
	jobPhotos := map[string][]string{}
	for id, st := range states {
		for _, o := range st.Objects {
			if o.Legacy != "" {
				owners[o.Legacy] = append(owners[o.Legacy], id)
			}
		}
		if j := jobOfPhoto(st); j != "" {
			jobPhotos[j] = append(jobPhotos[j], id)
		}
	}
	dels := map[string]ledger.LegacyDeletion{}
	moves := map[string][]ledger.ObjectMove{}
	legacyRows := map[string][]ledger.Photo{}
	for start := 0; start < len(keys); start += cleanupPageKeys {
		page := keys[start:min(start+cleanupPageKeys, len(keys))]
		d, err := r.env.Store.ObjectMoveLegacyDeletions(ctx, page)
		if err != nil {
			return fmt.Errorf("cleanup_accounted: %w", err)
		}
		for k, v := range d {
			dels[k] = v
		}
		ms, err := r.env.Store.ObjectMoveListByOldKeys(ctx, page)
		if err != nil {
			return fmt.Errorf("cleanup_accounted: %w", err)
		}
		for _, m := range ms {
			moves[m.OldKey] = append(moves[m.OldKey], m)
		}
		jobSet := map[string]bool{}
		for _, k := range page {
			jobSet[ledger.JobOf(k)] = true
		}
		jobs := make([]string, 0, len(jobSet))
		for j := range jobSet {
			jobs = append(jobs, j)
		}
		rows, err := r.env.Store.PhotoListUsingJobs(ctx, jobs)
		if err != nil {
			return fmt.Errorf("cleanup_accounted: %w", err)
		}
		for j, ps := range rows {
			legacyRows[j] = append(legacyRows[j], ps...)
		}
	}
	finalCleanupRan := countOK(r.operatorCount("final_cleanup")) > 0
	for _, k := range keys {
		d := dels[k]
		photo := ""
		if ids := owners[k]; len(ids) > 0 {
			photo = ids[0]
		}
		switch {
		case !present[k] && !d.Gone():
			rep.Legacy["gone_unrecorded"]++
			what := "a legacy object of photo " + photo
			if photo == "" {
				what = "an orphan (no photo ever had it; cleanup never deletes one)"
			}
			detail := fmt.Sprintf("%s is gone, but the ledger records no deletion of it", what)
			if d.DeletedAt != nil {
				detail += fmt.Sprintf(" (cleanup recorded one at %s, but a rollback copied it back at %s)", d.DeletedAt.Format("15:04:05.000"), d.RestoredAt.Format("15:04:05.000"))
			}
			if d.Intent {
				detail += " (a delete intent is recorded and was never settled)"
			}
			r.violate(Violation{Invariant: InvCleanup, PhotoID: photo, Key: k, Detail: detail})
		case !present[k]:
			rep.Legacy[legacyDeleted]++
		case d.Gone():
			at := d.PurgedAt
			by := "archived purge"
			if at == nil {
				at, by = d.DeletedAt, "cleanup"
			}
			r.violate(Violation{Invariant: InvCleanup, PhotoID: photo, Key: k, Detail: fmt.Sprintf("%s recorded its deletion at %s, but it is still there", by, at.Format("15:04:05.000"))})
		default:
			why := keptBecause(k, states, owners[k], jobPhotos[ledger.JobOf(k)], legacyRows[ledger.JobOf(k)], moves[k])
			rep.Legacy[why]++
			if why == "" && finalCleanupRan {
				r.violate(Violation{Invariant: InvCleanup, PhotoID: photo, Key: k, Detail: "kept by `cleanup --grace 0`, but by its own rules it may go: no row references its job, and every live photo of the job has its own committed copy of it, which the application never changed; " + describeMoves(moves[k])})
			}
		}
	}
	if n := rep.Legacy[""]; n > 0 {
		rep.Legacy["kept_deletable"] = n
		delete(rep.Legacy, "")
	}
	if !finalCleanupRan {
		r.note("cleanup_accounted: the final cleanup did not succeed (finish_operations says why): what it should have deleted was not checked")
	}
	return nil
}

// operatorCount returns a copy of the count of one operator action.
func (r *Runner) operatorCount(what string) *Count {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.operator[what]; c != nil {
		cc := *c
		return &cc
	}
	return nil
}

// jobOfPhoto is the legacy job a photo's row was inserted with ("" for a
// photo created under Phase 1).
func jobOfPhoto(st appsim.PhotoState) string {
	if st.JobID != "" {
		return st.JobID
	}
	if st.Legacy.Original != "" {
		return ledger.JobOf(st.Legacy.Original)
	}
	return ""
}

// keptBecause says why cleanup may keep legacy object key, judged from the
// model and the ledger's moves as cleanup's own rules would ("" if none
// holds: cleanup --grace 0 must delete it). It errs towards keeping: an
// object it cannot judge is "kept" for a reason, never claimed deletable.
func keptBecause(key string, states map[string]appsim.PhotoState, had, jobPhotos []string, legacyRows []ledger.Photo, moves []ledger.ObjectMove) string {
	if len(had) == 0 {
		return legacyOrphan
	}
	if len(legacyRows) > 0 {
		return legacyReferenced
	}
	moved := map[string]bool{}
	candidates := 0
	for _, m := range moves {
		if !m.Committed() {
			continue
		}
		moved[m.PhotoID] = true
		if m.Superseded || m.NewDeletedAt != nil {
			continue
		}
		candidates++
		st, ok := states[m.PhotoID]
		if !ok {
			return legacyUnknownPhoto
		}
		if st.Deleted {
			continue // a deleted photo's copy went with it: cleanup relies on none
		}
		u, err := keylayout.ParseUserKey(m.NewKey)
		if err != nil || st.Owner == nil || *st.Owner != u.UserID {
			return legacyCopyChanged
		}
		o, ok := st.Object(appsim.ObjKeyOf(u))
		if !ok || !o.Live() || !o.Pristine() || o.AppUser {
			return legacyCopyChanged
		}
	}
	if candidates == 0 {
		return legacyNeverMoved
	}
	for _, id := range jobPhotos {
		if st := states[id]; !st.Deleted && !moved[id] {
			return legacyPhotoWithout
		}
	}
	return ""
}

// describeMoves names the moves of a legacy object for a violation.
func describeMoves(moves []ledger.ObjectMove) string {
	if len(moves) == 0 {
		return "the ledger has no move of it"
	}
	var parts []string
	for _, m := range moves {
		s := fmt.Sprintf("photo %s to %s", m.PhotoID, m.NewKey)
		if m.CommittedAt != nil {
			s += " committed " + m.CommittedAt.Format("15:04:05.000")
		}
		if m.DeleteIntentAt != nil {
			s += " (delete intent " + m.DeleteIntentAt.Format("15:04:05.000") + ")"
		}
		parts = append(parts, s)
		if len(parts) == cleanupCheckSamples {
			break
		}
	}
	return "moves: " + strings.Join(parts, "; ")
}
