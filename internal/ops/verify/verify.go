// Package verify is the Phase 3 gate: it checks that no row references a
// legacy key, that every key a row references is inside its owner's prefix and
// exists, and that every object the ledger records as moved is still at its new
// key with the recorded size and checksum. With Deep it also compares every
// moved object with its legacy original, byte for byte where checksums cannot
// decide.
package verify

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// The kinds of problem verify reports.
const (
	LegacyKeyReferenced    = "legacy_key_referenced"
	KeyOutsideOwnerPrefix  = "key_outside_owner_prefix"
	ReferencedKeyMissing   = "referenced_key_missing"
	MovedObjectMissing     = "moved_object_missing"
	MovedObjectDiffers     = "moved_object_differs"
	LegacyObjectMissing    = "legacy_object_missing"
	CopyDiffersFromLegacy  = "copy_differs_from_legacy"
	LegacyChangedAfterMove = "legacy_changed_after_move"
	UnmovedLegacyObject    = "unmoved_legacy_object"
)

// LegacyPrefixes are the prefixes of the flat layout.
var LegacyPrefixes = []string{"uploaded/", "restored/", "thumbnails/", "animated/", "meta/"}

// Problem is one failed check.
type Problem struct {
	Kind    string `json:"kind"`
	PhotoID string `json:"photo_id,omitempty"`
	Key     string `json:"key,omitempty"`
	Detail  string `json:"detail"`
}

// Options tune a verification.
type Options struct {
	// Deep compares each moved object with its legacy source (while the source
	// exists): size, content type, metadata, then checksum or bytes.
	Deep bool
	// Concurrency bounds the objects checked at once (a moved object's copy
	// and legacy source are HEADed together: up to twice as many requests).
	Concurrency int
	// MaxProblems caps the problems, orphans and photos to requeue or repair
	// listed as examples (all are counted): the report's size is bounded
	// whatever the size of the bucket.
	MaxProblems int
	// Progress, if set, is called with the number of items checked.
	Progress func(checked int64)
	// RunID scopes the checks to the photos the ledger attributes to one run:
	// their rows and their moved objects. The listing of the legacy prefixes
	// (orphans, unmoved legacy objects) is bucket-wide and is skipped.
	RunID string
	// Shard and Shards split the pass: this call checks shard Shard of Shards
	// (0 of 1 when Shards is 0): its range of the committed moves (by new
	// key), of photos (by id) and of the legacy prefixes' key ranges. The
	// ranges are fixed in the ledger by the first shard that starts, so the
	// shards are disjoint and together cover everything. With RunID the
	// shards split the run's photos by a hash of their id instead (each
	// shard checks the rows and the committed moves of its photos).
	Shard, Shards int
	// Resume keeps the shard's cursor and tally in the ledger (a pass of
	// keymigrate.pass_cursors): a call killed at any point continues from its
	// last page when made again with the same options, and a finished shard
	// returns its recorded tally without checking again while other shards
	// of its pass have not finished (ResetPass starts over). Once every
	// shard finished the pass is complete, and the next call starts a new
	// one. Without Resume the check starts from the beginning and records
	// nothing.
	Resume bool
	// Requeue, if set, is given, a page at a time, the migrated photos with
	// legacy objects left unmoved (repair false) and, with Repair, the photos
	// whose copies are missing (repair true), before the page is recorded as
	// done: a kill sends a page's photos again, never loses them.
	Requeue func(ctx context.Context, photos []string, repair bool) error
	Repair  bool
	// Inventory, if set, is a loaded S3 Inventory report: an object it lists
	// with the size and ETag the ledger expects, and that the ledger did not
	// write after the report's date, is not HEADed; the legacy prefixes are
	// read from it instead of listed (docs/inventory.md, staleness).
	Inventory *ledger.InventoryReport
	// Holder names this process in the shard's lease (with Resume; the host,
	// the pid and a random suffix when empty): one process runs a shard at a
	// time, and a second one is refused with a *ledger.LeaseHeldError naming
	// the holder. Two at once would check everything twice, and one of a
	// pass restarted meanwhile would record its old checks in the new pass.
	Holder string
	// LeaseTTL is how long the lease holds unless renewed (default
	// ledger.DefaultLeaseTTL): it is renewed every third of it while the
	// shard runs; a process that died leaves the shard to the next one once
	// it lapses, or at once to a rerun on its own host (ledger.PassLeaseHold).
	LeaseTTL time.Duration
	// hooks let verify's own tests act between its steps (nil in
	// production).
	hooks hooks
}

// hooks are called at points verify's tests need to reach. They are not part
// of Options as a user fills it in: only verify's own tests set them (through
// WithHooks in export_test.go), and production leaves them nil.
type hooks struct {
	// beforeSave runs after a page of phase was checked, before it is
	// recorded.
	beforeSave func(ctx context.Context, phase string) error
}

// Report is the outcome: counts, and examples bounded by MaxProblems. It is
// also a shard's tally in the ledger, and the union of the shards' tallies.
type Report struct {
	RowsChecked    int64            `json:"rows_checked"`
	ArchivedRows   int64            `json:"archived_rows"`
	ObjectsChecked int64            `json:"objects_checked"`
	LegacyPresent  int64            `json:"legacy_objects_present"`
	LegacyDeleted  int64            `json:"legacy_objects_cleaned_up"`
	ListedObjects  int64            `json:"legacy_objects_listed"`
	DeepCompared   int64            `json:"deep_compared"`
	ProblemCount   int64            `json:"problem_count"`
	Problems       []Problem        `json:"problems"`
	ProblemsByKind map[string]int64 `json:"problems_by_kind"`
	// Orphans are legacy objects no row references and the ledger did not
	// move (restores nobody points at, say): reported, never a failure.
	OrphanCount int64    `json:"orphan_count"`
	Orphans     []string `json:"orphans"`
	// Requeue lists (up to MaxProblems) the migrated photos with legacy
	// objects left unmoved: a worker moves them (verify --requeue).
	// RequeueCount counts them, once per page that found them.
	Requeue      []string `json:"requeue,omitempty"`
	RequeueCount int64    `json:"requeue_count"`
	// Missing counts moved objects no longer at their new key that no row
	// references (an animation, a metadata file): the application deleted
	// them, most likely, and a deletion is final, so this is reported and
	// not a failure. Repair lists (up to MaxProblems) their photos, and those
	// of rows pointing at a missing key, for an operator who knows they were
	// lost rather than deleted (verify --requeue --repair copies them again
	// from the legacy objects); RepairCount counts them.
	Missing     int64    `json:"missing_copies"`
	Repair      []string `json:"repair,omitempty"`
	RepairCount int64    `json:"repair_count"`
	// Rewritten counts moved objects whose bytes are no longer the copy
	// keymigrate made: the application wrote a newer version (reported, not
	// a failure; cleanup keeps their legacy objects).
	Rewritten int64 `json:"rewritten_by_application"`
	// Superseded counts objects the application wrote under users/ before
	// keymigrate copied them (nothing to check).
	Superseded int64 `json:"superseded_by_application"`
	// DeletedPhotos counts moved objects of photos the application deleted
	// (their rows are gone).
	DeletedPhotos int64 `json:"objects_of_deleted_photos"`
	// PurgedRows counts archived rows whose legacy objects `archived purge`
	// deleted: they await the application's DELETE, and are not checked.
	PurgedRows int64 `json:"purged_rows"`
	// LegacyPurged counts moves whose legacy object `archived purge`
	// deleted: an archived row of the same job needed it no longer once the
	// moved photo (an owned duplicate) had its own copy, and purge recorded
	// the deletion against the archived photo, not the move.
	// PurgedReferences counts the references of archived rows, whose purge
	// is not complete (it kept what another row still needs), to legacy keys
	// purge deleted: like PurgedRows, they await the application's DELETE.
	// A legacy key gone with no recorded deletion, cleanup's or purge's, is
	// still a problem.
	LegacyPurged     int64 `json:"legacy_objects_purged"`
	PurgedReferences int64 `json:"purged_references"`
	// Heads counts the HEAD requests sent; Vouched the object checks an
	// inventory answered instead.
	Heads   int64 `json:"head_requests"`
	Vouched int64 `json:"vouched_by_inventory"`
	// RunID is the run the checks were scoped to; LegacyListed is false when
	// the legacy prefixes were not listed (a scoped verify).
	RunID        string `json:"run_id,omitempty"`
	LegacyListed bool   `json:"legacy_listed"`
	// Shards is how many shards the pass has; Shard which one this report is
	// (-1 for the union of all of them).
	Shard  int `json:"shard"`
	Shards int `json:"shards"`
	// Resumed says this call continued a pass a former call started;
	// AlreadyDone that the shard had finished and nothing was checked again.
	Resumed     bool `json:"resumed,omitempty"`
	AlreadyDone bool `json:"already_done,omitempty"`
	// TookOverFrom names the process whose lapsed lease of the shard this
	// run took over (it died, or lost the database for longer than the
	// lease): this run's news, not part of the shard's tally.
	TookOverFrom string `json:"-"`

	mu          sync.Mutex
	maxProblems int
	seen        map[string]bool // photos listed for requeue or repair (a page's)
	// unlessPurged holds a page's problems about legacy keys that are gone,
	// until the page asks the ledger whether purge deleted them
	// (pass.settlePurged): a page where nothing is gone asks nothing.
	unlessPurged []Problem
}

func newReport(max int) *Report {
	return &Report{maxProblems: max, ProblemsByKind: map[string]int64{}, Problems: []Problem{}, Orphans: []string{}}
}

// OK reports whether every check passed.
func (r *Report) OK() bool { return r.ProblemCount == 0 }

func (r *Report) add(p Problem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ProblemCount++
	r.ProblemsByKind[p.Kind]++
	if len(r.Problems) < r.maxProblems {
		r.Problems = append(r.Problems, p)
	}
}

// addUnlessPurged holds p, a problem about a legacy key (p.Key) that is
// gone, until the page's check asks whether `archived purge` recorded its
// deletion: reported if not, counted as purge's if so.
func (r *Report) addUnlessPurged(p Problem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unlessPurged = append(r.unlessPurged, p)
}

// requeue and repair list a photo in a page's report; a page's lists are
// complete (bounded by the page), the merged report's are examples.
func (r *Report) requeue(photoID string) {
	r.listPhoto(&r.Requeue, &r.RequeueCount, "q"+photoID, photoID)
}
func (r *Report) repair(photoID string) { r.listPhoto(&r.Repair, &r.RepairCount, "r"+photoID, photoID) }

func (r *Report) listPhoto(list *[]string, n *int64, mark, photoID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if r.seen[mark] {
		return
	}
	r.seen[mark] = true
	*n++
	*list = append(*list, photoID)
}

func (r *Report) orphan(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.OrphanCount++
	if len(r.Orphans) < r.maxProblems {
		r.Orphans = append(r.Orphans, key)
	}
}

// merge adds a page's (or a shard's) report to r, keeping at most
// r.maxProblems examples of each list.
func (r *Report) merge(d *Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range []struct{ dst, src *int64 }{
		{&r.RowsChecked, &d.RowsChecked}, {&r.ArchivedRows, &d.ArchivedRows}, {&r.ObjectsChecked, &d.ObjectsChecked},
		{&r.LegacyPresent, &d.LegacyPresent}, {&r.LegacyDeleted, &d.LegacyDeleted}, {&r.ListedObjects, &d.ListedObjects},
		{&r.DeepCompared, &d.DeepCompared}, {&r.ProblemCount, &d.ProblemCount}, {&r.OrphanCount, &d.OrphanCount},
		{&r.RequeueCount, &d.RequeueCount}, {&r.Missing, &d.Missing}, {&r.RepairCount, &d.RepairCount},
		{&r.Rewritten, &d.Rewritten}, {&r.Superseded, &d.Superseded}, {&r.DeletedPhotos, &d.DeletedPhotos},
		{&r.PurgedRows, &d.PurgedRows}, {&r.Heads, &d.Heads}, {&r.Vouched, &d.Vouched},
		{&r.LegacyPurged, &d.LegacyPurged}, {&r.PurgedReferences, &d.PurgedReferences},
	} {
		*c.dst += atomic.LoadInt64(c.src)
	}
	for k, n := range d.ProblemsByKind {
		r.ProblemsByKind[k] += n
	}
	r.Problems = appendCapped(r.Problems, d.Problems, r.maxProblems)
	r.Orphans = appendCapped(r.Orphans, d.Orphans, r.maxProblems)
	r.Requeue = appendNew(r.Requeue, d.Requeue, r.maxProblems)
	r.Repair = appendNew(r.Repair, d.Repair, r.maxProblems)
}

func appendCapped[T any](dst, src []T, limit int) []T {
	return append(dst, src[:min(len(src), max(0, limit-len(dst)))]...)
}

// appendNew appends the photos of src not in dst yet, up to max (a short,
// bounded list: the scan is cheap).
func appendNew(dst, src []string, limit int) []string {
	for _, p := range src {
		if len(dst) >= limit {
			break
		}
		if !contains(dst, p) {
			dst = append(dst, p)
		}
	}
	sort.Strings(dst)
	return dst
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

const page = 500

// Run verifies the migration, or the shard of it Options name (see Options
// for the shards, the cursor in the ledger and the inventory).
func Run(ctx context.Context, store *ledger.Store, objects *objstore.Store, o Options) (_ *Report, err error) {
	o, err = o.normalize()
	if err != nil {
		return nil, err
	}
	r := newReport(o.MaxProblems)
	r.RunID, r.Shard, r.Shards = o.RunID, o.Shard, o.Shards
	if o.RunID != "" {
		if _, err := store.RunFind(ctx, o.RunID); err != nil {
			return r, err
		}
	}
	p := &pass{store: store, objects: objects, o: o, r: r}
	if o.Resume {
		// One process per shard: the lease is taken as the shard is joined
		// (a finished one included) and held while it runs.
		var lease *ledger.PassLease
		ctx, lease, err = p.join(ctx)
		if err != nil {
			return p.r, err
		}
		defer lease.Release()
		defer func() { err = lease.Why(err) }()
		if p.r.AlreadyDone {
			return p.r, nil
		}
	}
	if err := p.fixRanges(ctx); err != nil {
		return p.r, err
	}
	for _, ph := range []struct {
		name string
		run  func(context.Context) error
	}{{phaseObjects, p.objectsPhase}, {phaseRows, p.rowsPhase}, {phaseLegacy, p.legacyPhase}} {
		if phaseIndex(p.pos.Phase) > phaseIndex(ph.name) {
			continue
		}
		if p.pos.Phase != ph.name {
			p.pos = position{Phase: ph.name}
		}
		if err := ph.run(ctx); err != nil {
			return p.r, err
		}
	}
	p.r.LegacyListed = o.RunID == ""
	if o.Resume {
		if err := store.PassCursorFinish(ctx, p.cursor, p.r); err != nil {
			return p.r, err
		}
	}
	return p.r, nil
}

// normalize fills the defaults and refuses impossible combinations.
func (o Options) normalize() (Options, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.MaxProblems <= 0 {
		o.MaxProblems = 100
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = ledger.DefaultLeaseTTL
	}
	if o.Holder == "" {
		o.Holder = ledger.LeaseHolderName()
	}
	if o.Shards == 0 {
		o.Shards = 1
	}
	if o.Shards < 1 || o.Shard < 0 || o.Shard >= o.Shards {
		return o, &ledger.ShardError{Shard: o.Shard, Shards: o.Shards}
	}
	if o.Shards > 1 && !o.Resume {
		return o, fmt.Errorf("verify shard %d/%d: shards need Resume, which fixes their ranges in the ledger once for all of them", o.Shard, o.Shards)
	}
	return o, nil
}

// ErrNotDone is returned by Union while shards of the pass have not finished.
var ErrNotDone = errors.New("the pass is not complete")
