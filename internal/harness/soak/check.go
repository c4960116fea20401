package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/dustin/go-humanize"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/ops/dlq"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// The invariants, as named in reports.
const (
	// InvReads: no read during the run failed, found nothing where the model
	// has bytes, returned bytes older than the last completed write, returned
	// an object deleted before it began, or returned bytes nobody wrote.
	InvReads = "reads_during_run"
	// InvFinalReads: after the run, every object of every live photo reads,
	// through the dual-read path, as the model's latest bytes (or absent).
	InvFinalReads = "final_reads"
	// InvRows: every live photo has its row, with the model's owner; every
	// deleted photo's row is gone.
	InvRows = "rows_match_model"
	// InvEndState: every photo ends migrated (every key column under
	// users/{owner_id}/), archived (no owner; keys untouched), or failed with
	// the reason the run gave it on purpose; nothing in progress or enqueued.
	InvEndState = "end_state"
	// InvUsersPrefix: every object under users/ is an object the model gives
	// to that user, with the model's latest bytes: nothing of a deleted photo
	// or a deleted object, nothing under a former owner's prefix, nothing
	// else.
	InvUsersPrefix = "users_prefix_exact"
	// InvLegacyKept: every legacy object a live row still references or
	// derives (its job's metadata and animations) exists with its bytes.
	InvLegacyKept = "needed_legacy_kept"
	// InvDLQ: the dead letters are exactly the photos broken on purpose (and
	// photos the application deleted); none is retries_exhausted.
	InvDLQ = "dlq_explained"
	// InvVerify: `migratectl verify --deep` reports only the problems the run
	// created on purpose, and names each of them.
	InvVerify = "verify_deep"
	// InvRollbackFinal: a rolled-back photo is not migrated again before the
	// operator runs the producer again.
	InvRollbackFinal = "rollback_final"
	// InvCopies: a copy the migration made of a legacy object carries its
	// content type, Cache-Control, Content-Disposition, Content-Language,
	// Content-Encoding, Expires, user metadata and tags, and the legacy
	// object's checksum value for every algorithm both carry (a single-part
	// copy at least one of the source's); a copy whose HEAD or tags cannot
	// be read is a violation too.
	InvCopies = "copies_keep_headers"
	// InvOperations: once the faults are over, the operator's finishing
	// commands (resume, throttle --off, producer, dlq redrive, cleanup)
	// succeed.
	InvOperations = "finish_operations"
	// InvFailureHistory: every row of keymigrate.failures (redriven or not)
	// and every message seen in the DLQ before a redrive belongs to a photo
	// broken on purpose or deleted by the application, or is transient with
	// a receive count at most maxReceiveCount - 2.
	InvFailureHistory = "failure_history"
	// InvSettled: at the first full drain, before the operator's finishing
	// `producer --new-run` could heal anything, every legacy row the runs
	// enqueued is migrated, archived, failed as broken on purpose, rolled
	// back or deleted, and every legacy row older than the last producer run
	// was enqueued: no message lost, no row skipped.
	InvSettled = "settled_before_rerun"
	// InvCleanup: after the final `cleanup --grace 0`, every legacy object
	// that is gone has a recorded deletion, every recorded deletion is
	// really gone, and every legacy object no live row needs and that
	// cleanup may delete by its own rules is gone; orphans and objects never
	// moved (of photos deleted before their migration) are kept.
	InvCleanup = "cleanup_accounted"
)

// Invariants lists them in report order.
var Invariants = []string{InvReads, InvFinalReads, InvRows, InvEndState, InvUsersPrefix, InvLegacyKept, InvCopies, InvDLQ, InvFailureHistory, InvSettled, InvCleanup, InvVerify, InvRollbackFinal, InvOperations, InvCopyPaths}

// Violation is one failed check.
type Violation struct {
	Invariant string `json:"invariant"`
	PhotoID   string `json:"photo_id,omitempty"`
	Key       string `json:"key,omitempty"`
	Detail    string `json:"detail"`
}

// check runs the end-of-run invariants and fills rep.
func (r *Runner) check(ctx context.Context, rep *Report) error {
	ids := r.sim.Model().IDs()
	states := map[string]appsim.PhotoState{}
	for _, id := range ids {
		st, _ := r.sim.Model().State(id)
		states[id] = st
	}

	// Reads during the run.
	sum := r.sim.Stats().Summary()
	for _, b := range sum.BadReads {
		r.violate(Violation{Invariant: InvReads, PhotoID: b.PhotoID, Key: b.Key,
			Detail: fmt.Sprintf("%s read of %s at %s: %s %s; %s", b.Verdict, b.Object, b.At.Format("15:04:05.000"), b.Error, retried(b.Retried), states[b.PhotoID].Describe())})
	}
	var listed int64
	for _, b := range sum.BadReads {
		_ = b
		listed++
	}
	var bad int64
	for v, n := range sum.Reads {
		if !v.Good() {
			bad += n
		}
	}
	if bad > listed {
		r.violate(Violation{Invariant: InvReads, Detail: fmt.Sprintf("… and %d more bad reads (counted, not listed)", bad-listed)})
	}

	// Final reads, through the application's path.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, id := range ids {
		g.Go(func() error {
			for _, res := range r.sim.ReadPhoto(gctx, id, true) {
				if res.Verdict != appsim.ReadOK && res.Verdict != appsim.ReadRewriteLostByDesign {
					r.violate(Violation{Invariant: InvFinalReads, PhotoID: id, Key: res.Key, Detail: fmt.Sprintf("%s read of %s: %s; %s", res.Verdict, res.Object, res.Error, states[id].Describe())})
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	if err := r.checkRows(ctx, states, rep); err != nil {
		return err
	}
	if err := r.checkUsersPrefix(ctx, states, rep); err != nil {
		return err
	}
	if err := r.checkLegacy(ctx, states); err != nil {
		return err
	}
	if err := r.checkCleanup(ctx, states, rep); err != nil {
		return err
	}
	if err := r.checkDLQ(ctx, states); err != nil {
		return err
	}
	if err := r.checkFailureHistory(ctx, rep); err != nil {
		return err
	}
	if err := r.checkCopyPaths(ctx, rep); err != nil {
		return err
	}
	return r.checkVerify(ctx, states, rep)
}

func retried(b bool) string {
	if b {
		return "(after one retry from the row)"
	}
	return ""
}

type dbRow struct {
	owner                *string
	status               string
	original             string
	processed, thumbnail *string
}

type ledgerRow struct {
	state  ledger.State
	reason string
}

// checkRows compares the photos table and the ledger's states with the model.
func (r *Runner) checkRows(ctx context.Context, states map[string]appsim.PhotoState, rep *Report) error {
	pool := r.env.Store.Pool()
	rows := map[string]dbRow{}
	q, err := pool.Query(ctx, `SELECT id::text, owner_id, status, original_key, processed_key, thumbnail_key FROM photos`)
	if err != nil {
		return err
	}
	for q.Next() {
		var id string
		var d dbRow
		if err := q.Scan(&id, &d.owner, &d.status, &d.original, &d.processed, &d.thumbnail); err != nil {
			q.Close()
			return err
		}
		rows[id] = d
	}
	q.Close()
	moves, err := ledgertest.ReadMoveStates(ctx, r.env.Store)
	if err != nil {
		return err
	}
	inLedger := map[string]ledgerRow{}
	for _, m := range moves {
		inLedger[m.PhotoID] = ledgerRow{state: m.State, reason: m.LastReason}
	}

	rep.Outcome = map[string]int{}
	for _, l := range inLedger {
		if l.state == ledger.StateFailed {
			rep.Failed[l.reason]++
		}
	}
	for id := range rows {
		if _, ok := states[id]; !ok {
			r.violate(Violation{Invariant: InvRows, PhotoID: id, Detail: "a photos row the application never wrote"})
		}
	}
	for id, st := range states {
		row, hasRow := rows[id]
		l, hasLedger := inLedger[id]
		if hasLedger && l.state.Open() {
			r.violate(Violation{Invariant: InvEndState, PhotoID: id, Detail: fmt.Sprintf("still %s in the ledger after the fleet went idle (%s)", l.state, st.Describe())})
		}
		if st.Deleted {
			rep.Outcome["deleted"]++
			if hasRow {
				r.violate(Violation{Invariant: InvRows, PhotoID: id, Detail: "the application deleted this row; it is back"})
			}
			continue
		}
		if !hasRow {
			r.violate(Violation{Invariant: InvRows, PhotoID: id, Detail: "the row of a live photo is gone: " + st.Describe()})
			continue
		}
		if !samePtr(row.owner, st.Owner) {
			r.violate(Violation{Invariant: InvRows, PhotoID: id, Detail: fmt.Sprintf("owner %s, the model says %s", deref(row.owner), deref(st.Owner))})
		}
		legacyKeys := row.original == st.Legacy.Original && samePtr(row.processed, st.Legacy.Processed) && samePtr(row.thumbnail, st.Legacy.Thumbnail)
		switch {
		case st.Owner == nil:
			rep.Outcome["archived"]++
			if row.status != ledger.ArchivedStatus || !legacyKeys {
				r.violate(Violation{Invariant: InvEndState, PhotoID: id, Detail: fmt.Sprintf("ownerless photo: status %q, keys %s; want archived with its keys untouched", row.status, row.original)})
			}
		case st.Expect != "":
			rep.Outcome["failed_on_purpose"]++
			if !hasLedger || l.state != ledger.StateFailed || l.reason != st.Expect {
				r.violate(Violation{Invariant: InvEndState, PhotoID: id, Detail: fmt.Sprintf("broken on purpose (%s): ledger %s %s", st.Expect, l.state, l.reason)})
			}
			if !legacyKeys {
				r.violate(Violation{Invariant: InvEndState, PhotoID: id, Detail: "broken on purpose: its keys changed"})
			}
		default:
			owner := *st.Owner
			bad := ""
			for _, k := range []*string{&row.original, row.processed, row.thumbnail} {
				if k != nil && keylayout.CheckUserKey(*k, owner) != nil {
					bad = *k
				}
			}
			switch {
			case bad != "":
				rep.Outcome["not_migrated"]++
				detail := fmt.Sprintf("%s still holds %s", st.Describe(), bad)
				if hasLedger {
					detail += fmt.Sprintf("; ledger %s %s", l.state, l.reason)
				}
				r.violate(Violation{Invariant: InvEndState, PhotoID: id, Key: bad, Detail: detail})
			case hasLedger && !l.state.Moved():
				rep.Outcome["not_migrated"]++
				r.violate(Violation{Invariant: InvEndState, PhotoID: id, Detail: fmt.Sprintf("row user-scoped but ledger %s %s (%s)", l.state, l.reason, st.Describe())})
			case hasLedger:
				rep.Outcome[string(l.state)]++
			default:
				rep.Outcome["phase1_native"]++
			}
		}
	}
	return nil
}

func samePtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

// checkUsersPrefix lists users/ and accounts for every object.
func (r *Runner) checkUsersPrefix(ctx context.Context, states map[string]appsim.PhotoState, rep *Report) error {
	var copiesMu sync.Mutex
	rep.Copies = map[string]int{}
	counted := func(kinds ...string) {
		copiesMu.Lock()
		defer copiesMu.Unlock()
		for _, k := range kinds {
			rep.Copies[k]++
		}
	}
	var keys []string
	if err := r.env.Objects.ListEach(ctx, keylayout.UserPrefixRoot, func(k string, _ int64, _ string) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, k := range keys {
		u, err := keylayout.ParseUserKey(k)
		if err != nil {
			r.violate(Violation{Invariant: InvUsersPrefix, Key: k, Detail: "not a key of the layout (a probe or other leftover)"})
			continue
		}
		st, ok := states[u.PhotoID]
		if !ok {
			r.violate(Violation{Invariant: InvUsersPrefix, PhotoID: u.PhotoID, Key: k, Detail: "object of a photo the application never had"})
			continue
		}
		if st.Deleted {
			r.violate(Violation{Invariant: InvUsersPrefix, PhotoID: u.PhotoID, Key: k, Detail: "object of a photo the application deleted: " + st.Describe()})
			continue
		}
		if st.Owner == nil || *st.Owner != u.UserID {
			why := "under the prefix of a user who does not own the photo"
			for _, p := range st.PrevOwners {
				if p == u.UserID {
					why = "under the prefix of the photo's former owner (an account merge moved it)"
				}
			}
			r.violate(Violation{Invariant: InvUsersPrefix, PhotoID: u.PhotoID, Key: k, Detail: why + ": " + st.Describe()})
			continue
		}
		o, ok := st.Object(appsim.ObjKeyOf(u))
		if !ok {
			r.violate(Violation{Invariant: InvUsersPrefix, PhotoID: u.PhotoID, Key: k, Detail: "an object the photo does not have: " + st.Describe()})
			continue
		}
		if !o.Live() {
			r.violate(Violation{Invariant: InvUsersPrefix, PhotoID: u.PhotoID, Key: k, Detail: "an object the application deleted is back"})
			continue
		}
		want := o.Latest().Hash
		copied := o.Pristine() && !o.AppUser
		g.Go(func() error {
			b, err := r.env.Objects.Get(gctx, k)
			if errors.Is(err, objstore.ErrNotFound) {
				return nil // listed, then gone: a final delete raced the listing; the reads decide
			}
			if err != nil {
				return err
			}
			if h := hashBytes(b); h != want {
				why := ""
				if o.RewrittenInPlace() {
					rec, err := r.copyRecord(gctx, u.PhotoID, k)
					if err != nil {
						return err
					}
					v, w := appsim.ExcuseInPlace(o.Object, h, rec)
					if v == appsim.ReadRewriteLostByDesign {
						counted("in_place_lost_by_design")
						return nil
					}
					why = "; the application rewrote its legacy key in place: " + w
				}
				r.violate(Violation{Invariant: InvUsersPrefix, PhotoID: u.PhotoID, Key: k, Detail: fmt.Sprintf("holds %s bytes, not the latest the application wrote (%s)%s", versionName(o, h), short(want), why)})
				return nil
			}
			legacy, ok := r.sim.Model().LegacyHeaders(o.Legacy)
			if !copied || !ok {
				return nil
			}
			// Nothing writes any more: a copy that was just read must
			// answer its HEAD and its tags; one that does not is not known
			// to carry anything.
			info, err := r.env.Objects.Head(gctx, k)
			if err != nil {
				r.violate(Violation{Invariant: InvCopies, PhotoID: u.PhotoID, Key: k, Detail: fmt.Sprintf("the copy of %s could not be read back to compare its headers: %v", o.Legacy, err)})
				return nil
			}
			tags, err := r.env.Objects.Tags(gctx, k)
			if err != nil {
				r.violate(Violation{Invariant: InvCopies, PhotoID: u.PhotoID, Key: k, Detail: fmt.Sprintf("the tags of the copy of %s could not be read to compare them: %v", o.Legacy, err)})
				return nil
			}
			got := appsim.HeadersOf(info, tags)
			kinds := []string{"all"}
			if info.Multipart() {
				kinds = append(kinds, "multipart")
			}
			if len(legacy.Tags) > 0 {
				kinds = append(kinds, "with_tags")
			}
			if legacy.Expires != "" {
				kinds = append(kinds, "with_expires")
			}
			for alg := range legacy.Checksums {
				if _, ok := got.Checksums[alg]; ok {
					kinds = append(kinds, "checksum_compared")
					break
				}
			}
			counted(kinds...)
			if d := legacy.Diff(got, info.Multipart()); d != "" {
				r.violate(Violation{Invariant: InvCopies, PhotoID: u.PhotoID, Key: k, Detail: "the copy of " + o.Legacy + " has " + d})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// The shaped objects are there so that the multipart copy path runs
	// under the faults: a run whose checked copies include none assembled
	// from parts did not show it (the threshold was not lowered, or every
	// large object was deleted, re-owned or rewritten by the application,
	// which the seed makes unlikely).
	// Copy-first workers (CopyFirstOn) run at the default threshold: no
	// multipart copy is expected of them. In a mixed fleet a copy-first
	// worker may take every shaped photo (four photos, each about as likely
	// to go to either kind of worker: one run in twenty or so, found by a
	// run of seed 874984): that run did not soak the multipart path, which
	// the report says, but nothing went wrong. A large object the careful
	// path copied, with no copy from parts to show for it, is a violation.
	if r.cfg.Shaped > 0 && r.cfg.CopyFirst != CopyFirstOn && rep.Copies["multipart"] == 0 {
		threshold, err := humanize.ParseBytes(r.cfg.MultipartThreshold)
		if err != nil {
			return fmt.Errorf("multipart threshold %q: %w", r.cfg.MultipartThreshold, err)
		}
		copiedFirst, careful, err := ledgertest.CountLargeCopyPaths(ctx, r.env.Store, int64(threshold), copyFirstMethod)
		if err != nil {
			return err
		}
		if careful == 0 && copiedFirst > 0 && r.cfg.CopyFirst == CopyFirstMixed {
			r.note("copies: every one of the %d committed moves above the %s multipart threshold was copied first (copy-first workers run at the default threshold): the multipart path was not soaked this run", copiedFirst, r.cfg.MultipartThreshold)
		} else {
			r.violate(Violation{Invariant: InvCopies, Detail: fmt.Sprintf("%d shaped legacy photos with objects above the %s multipart threshold were seeded, but no copy compared was assembled from parts (committed moves above it: %d by the careful path, %d copied first)", r.cfg.Shaped, r.cfg.MultipartThreshold, careful, copiedFirst)})
		}
	}
	return nil
}

func versionName(o appsim.ObjectState, h string) string {
	for i, v := range o.Versions {
		if v.Hash == h {
			return fmt.Sprintf("version %d of %d", i+1, len(o.Versions))
		}
	}
	return "unknown (" + short(h) + ")"
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// checkLegacy: every legacy object a live row still needs exists, with its
// bytes. A row needs the legacy keys its columns hold, and, while its
// original is legacy, the metadata and animations of its job that the
// application did not replace.
func (r *Runner) checkLegacy(ctx context.Context, states map[string]appsim.PhotoState) error {
	pool := r.env.Store.Pool()
	need := map[string]string{}     // legacy key → a photo that needs it
	needBy := map[string][]string{} // legacy key → every photo that needs it
	for id, st := range states {
		if st.Deleted {
			continue
		}
		var original string
		var processed, thumbnail *string
		if err := pool.QueryRow(ctx, `SELECT original_key, processed_key, thumbnail_key FROM photos WHERE id = $1`, id).Scan(&original, &processed, &thumbnail); err != nil {
			continue // InvRows reports it
		}
		for _, k := range []*string{&original, processed, thumbnail} {
			if k == nil || keylayout.IsUserScoped(*k) {
				continue
			}
			if st.Expect == appsim.ExpectSourceMissing && *k == st.Legacy.Original {
				continue // never existed: that is the point of this row
			}
			need[*k] = id
			needBy[*k] = append(needBy[*k], id)
		}
		if keylayout.IsUserScoped(original) {
			continue
		}
		for _, o := range st.Objects {
			if (o.Key.Kind == keylayout.KindMetadata || o.Key.Kind == keylayout.KindAnimation) && o.Pristine() {
				need[o.Legacy] = id
				needBy[o.Legacy] = append(needBy[o.Legacy], id)
			}
		}
	}
	// `archived purge` deletes legacy objects of the archived photos it
	// handles (all of a photo's, or, when another row needs some, the
	// rest), leaving their rows (docs/guarantees.md): an object is excused
	// only when the purge reported deleting it and every live row that needs
	// it is a photo the purge handled.
	// What the purges reported, and what the ledger records they deleted
	// and handled: a purge killed mid-run (its time limit, F16) prints no
	// report, and a rerun does not look again at the photos it completed.
	r.mu.Lock()
	purgedKeys, purged := maps.Clone(r.purgedKeys), maps.Clone(r.purgedPhotos)
	r.mu.Unlock()
	lkeys, lphotos, err := ledgertest.PurgedByLedger(ctx, r.env.Store)
	if err != nil {
		return err
	}
	if purgedKeys == nil {
		purgedKeys, purged = map[string]bool{}, map[string]bool{}
	}
	maps.Copy(purgedKeys, lkeys)
	maps.Copy(purged, lphotos)
	// Those excuses trust purge's own word on which photos it handled; a
	// purge may handle only a photo that was archived, so one the model
	// never saw without an owner is a violation, not an excuse.
	for _, id := range slices.Sorted(maps.Keys(purged)) {
		if st, ok := states[id]; !ok || !wasOwnerless(st) {
			r.violate(Violation{Invariant: InvLegacyKept, PhotoID: id, Detail: "archived purge handled this photo, which never had its owner NULL (not archivable): " + st.Describe()})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for key, id := range need {
		g.Go(func() error {
			b, err := r.env.Objects.Get(gctx, key)
			if errors.Is(err, objstore.ErrNotFound) && purgedKeys[key] && allPurged(needBy[key], purged) {
				return nil
			}
			if errors.Is(err, objstore.ErrNotFound) {
				r.violate(Violation{Invariant: InvLegacyKept, PhotoID: id, Key: key, Detail: "deleted, but a live row still references or derives it: " + states[id].Describe() + r.whoDeleted(gctx, key)})
				return nil
			}
			if err != nil {
				return err
			}
			if want, ok := r.sim.Model().LegacyHash(key); ok && want != hashBytes(b) {
				r.violate(Violation{Invariant: InvLegacyKept, PhotoID: id, Key: key, Detail: "its bytes changed"})
			}
			return nil
		})
	}
	return g.Wait()
}

// wasOwnerless reports whether the model's photo had no owner at some point:
// now, when seeded or inserted (nothing set one), or before an owner was
// given or assigned to it. Only such a photo can have been archived, and so
// purged.
func wasOwnerless(st appsim.PhotoState) bool {
	if st.Owner == nil {
		return true
	}
	for _, e := range st.Events {
		switch e.Kind {
		case "remove_owner", "give_owner", "archived_assign":
			return true
		}
	}
	return false
}

// allPurged reports whether every photo of ids is one a purge handled.
func allPurged(ids []string, purged map[string]bool) bool {
	for _, id := range ids {
		if !purged[id] {
			return false
		}
	}
	return len(ids) > 0
}

// whoDeleted says which recorded move cleanup deleted a legacy key under.
func (r *Runner) whoDeleted(ctx context.Context, key string) string {
	d, err := ledgertest.FirstLegacyDeletion(ctx, r.env.Store, key)
	if err != nil {
		return "; no recorded cleanup deleted it"
	}
	return fmt.Sprintf("; cleanup deleted it at %s as the move of photo %s (now %s)", d.DeletedAt.Format("15:04:05.000"), d.PhotoID, d.State)
}

// checkDLQ: every dead letter is explained by a photo broken on purpose, or
// one the application deleted; none ran out of retries.
func (r *Runner) checkDLQ(ctx context.Context, states map[string]appsim.PhotoState) error {
	l, err := dlq.List(ctx, r.env.Store, r.env.DLQ, "", 5, 100000)
	if err != nil {
		return err
	}
	lastErr, err := ledgertest.ReadLastErrors(ctx, r.env.Store)
	if err != nil {
		return err
	}
	for _, g := range l.Groups {
		for _, id := range g.PhotoIDs {
			st, ok := states[id]
			switch {
			case g.Reason == dlq.ReasonUnknown:
				r.violate(Violation{Invariant: InvDLQ, PhotoID: id, Detail: "dead-lettered as retries_exhausted: its receives were spent on transient (injected) faults"})
			case ok && st.Expect == g.Reason:
			case ok && st.Deleted:
			default:
				r.violate(Violation{Invariant: InvDLQ, PhotoID: id, Detail: fmt.Sprintf("dead-lettered as %s: %s", g.Reason, lastErr[id])})
			}
		}
		for _, m := range g.MessageIDs {
			r.violate(Violation{Invariant: InvDLQ, Detail: fmt.Sprintf("dead-lettered message %s (%s) without a photo", m, g.Reason)})
		}
	}
	return nil
}

// checkVerify runs `migratectl verify --deep --json` and accepts only the
// problems of the rows broken on purpose, each of which it must name.
func (r *Runner) checkVerify(ctx context.Context, states map[string]appsim.PhotoState, rep *Report) error {
	out, code, err := r.procs.Run(ctx, "migratectl", "verify", "--deep", "--json", "--max-problems", "100000")
	if err != nil && code != 2 {
		return fmt.Errorf("verify: %w", err)
	}
	var vr verify.Report
	if err := json.Unmarshal([]byte(out), &vr); err != nil {
		return fmt.Errorf("verify --json: %w: %s", err, tail(out, 3))
	}
	rep.Verify = &VerifySummary{Rows: vr.RowsChecked, Objects: vr.ObjectsChecked, DeepCompared: vr.DeepCompared, Problems: vr.ProblemsByKind, Orphans: vr.OrphanCount}
	expected := map[string]bool{} // photo|kind|key
	for id, st := range states {
		if st.Expect == "" || st.Deleted {
			continue
		}
		for _, k := range []*string{&st.Legacy.Original, st.Legacy.Processed, st.Legacy.Thumbnail} {
			if k != nil {
				expected[id+"|"+verify.LegacyKeyReferenced+"|"+*k] = true
			}
		}
		if st.Expect == appsim.ExpectSourceMissing {
			// The row points at a legacy original that was never uploaded:
			// verify names that too.
			expected[id+"|"+verify.ReferencedKeyMissing+"|"+st.Legacy.Original] = true
		}
	}
	named := map[string]bool{}
	for _, p := range vr.Problems {
		k := p.PhotoID + "|" + p.Kind + "|" + p.Key
		if expected[k] {
			named[k] = true
			continue
		}
		detail := p.Kind + ": " + p.Detail
		if st, ok := states[p.PhotoID]; ok && p.Kind == verify.LegacyChangedAfterMove {
			// The application rewrote the legacy key in place in the one
			// window the worker cannot see (appsim.ExcuseInPlace): verify
			// naming the copy stale is what it owes the operator.
			why := r.lostByDesign(ctx, st, p.Key)
			if why == "" {
				r.note("verify_deep: %s of photo %s: a rewrite in place after the copy was recorded, named by verify as it should be", p.Key, p.PhotoID)
				continue
			}
			detail += "; not the window a rewrite in place may fall in: " + why
		}
		r.violate(Violation{Invariant: InvVerify, PhotoID: p.PhotoID, Key: p.Key, Detail: detail})
	}
	missing := []string{}
	for k := range expected {
		if !named[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		parts := strings.SplitN(k, "|", 3)
		r.violate(Violation{Invariant: InvVerify, PhotoID: parts[0], Key: parts[2], Detail: "verify did not name this deliberate problem (" + parts[1] + ")"})
	}
	return nil
}
