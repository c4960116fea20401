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

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
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
	// Concurrency bounds the S3 requests in flight.
	Concurrency int
	// MaxProblems caps the problems listed (all are counted).
	MaxProblems int
	// Progress, if set, is called with the number of items checked.
	Progress func(checked int64)
	// RunID scopes the checks to the photos the ledger attributes to one run:
	// their rows and their moved objects. The listing of the legacy prefixes
	// (orphans, unmoved legacy objects) is bucket-wide and is skipped.
	RunID string
}

// Report is the outcome.
type Report struct {
	RowsChecked    int64            `json:"rows_checked"`
	ArchivedRows   int64            `json:"archived_rows"`
	ObjectsChecked int64            `json:"objects_checked"`
	LegacyPresent  int64            `json:"legacy_objects_present"`
	LegacyDeleted  int64            `json:"legacy_objects_cleaned_up"`
	DeepCompared   int64            `json:"deep_compared"`
	ProblemCount   int64            `json:"problem_count"`
	Problems       []Problem        `json:"problems"`
	ProblemsByKind map[string]int64 `json:"problems_by_kind"`
	// Orphans are legacy objects no row references and the ledger did not
	// move (restores nobody points at, say): reported, never a failure.
	OrphanCount int64    `json:"orphan_count"`
	Orphans     []string `json:"orphans"`
	// Requeue lists the migrated photos with legacy objects left unmoved: a
	// worker moves them (verify --requeue).
	Requeue []string `json:"requeue,omitempty"`
	// Missing counts moved objects no longer at their new key that no row
	// references (an animation, a metadata file): the application deleted
	// them, most likely, and a deletion is final, so this is reported and
	// not a failure. Repair lists their photos, and those of rows pointing
	// at a missing key, for an operator who knows they were lost rather than
	// deleted (verify --requeue --repair copies them again from the legacy
	// objects).
	Missing int64    `json:"missing_copies"`
	Repair  []string `json:"repair,omitempty"`
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
	// RunID is the run the checks were scoped to; LegacyListed is false when
	// the legacy prefixes were not listed (a scoped verify).
	RunID        string `json:"run_id,omitempty"`
	LegacyListed bool   `json:"legacy_listed"`
	mu           sync.Mutex
	maxProblems  int
}

func addOnce(mu *sync.Mutex, list *[]string, photoID string) {
	mu.Lock()
	defer mu.Unlock()
	for _, p := range *list {
		if p == photoID {
			return
		}
	}
	*list = append(*list, photoID)
}

func (r *Report) requeue(photoID string) { addOnce(&r.mu, &r.Requeue, photoID) }
func (r *Report) repair(photoID string)  { addOnce(&r.mu, &r.Repair, photoID) }

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

const page = 500

// Run verifies the migration.
func Run(ctx context.Context, store *ledger.Store, objects *objstore.Store, o Options) (*Report, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.MaxProblems <= 0 {
		o.MaxProblems = 100
	}
	r := &Report{maxProblems: o.MaxProblems, ProblemsByKind: map[string]int64{}, Problems: []Problem{}, Orphans: []string{}, RunID: o.RunID}
	if o.RunID != "" {
		if _, err := store.RunFind(ctx, o.RunID); err != nil {
			return r, err
		}
	}
	var checked atomic.Int64
	tick := func() {
		if n := checked.Add(1); o.Progress != nil && n%200 == 0 {
			o.Progress(n)
		}
	}
	if err := checkObjects(ctx, store, objects, o, r, tick); err != nil {
		return r, err
	}
	if err := checkRows(ctx, store, objects, o, r, tick); err != nil {
		return r, err
	}
	if o.RunID != "" {
		return r, nil
	}
	r.LegacyListed = true
	if err := checkLegacy(ctx, store, objects, o, r); err != nil {
		return r, err
	}
	sort.Strings(r.Repair)
	return r, nil
}

// checkObjects walks the committed moves in the ledger.
func checkObjects(ctx context.Context, store *ledger.Store, objects *objstore.Store, o Options, r *Report, tick func()) error {
	after := ""
	for {
		var batch []ledger.ObjectMove
		var err error
		if o.RunID != "" {
			batch, err = store.ObjectMoveListCommittedOfRun(ctx, o.RunID, after, page)
		} else {
			batch, err = store.ObjectMoveListCommitted(ctx, after, page)
		}
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		ids := make([]string, 0, len(batch))
		for _, m := range batch {
			ids = append(ids, m.PhotoID)
		}
		rows, err := store.PhotoGetMany(ctx, ids)
		if err != nil {
			return err
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(o.Concurrency)
		for _, m := range batch {
			row, live := rows[m.PhotoID]
			g.Go(func() error {
				defer tick()
				return checkObject(gctx, objects, o, r, m, row, live)
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		after = batch[len(batch)-1].NewKey
	}
}

func checkObject(ctx context.Context, objects *objstore.Store, o Options, r *Report, m ledger.ObjectMove, row ledger.Photo, live bool) error {
	atomic.AddInt64(&r.ObjectsChecked, 1)
	switch {
	case m.NewDeletedAt != nil:
		return nil // rolled back with --delete-new
	case m.Superseded:
		atomic.AddInt64(&r.Superseded, 1)
		return nil
	case !live:
		// The application deleted the photo: its new copies went with it.
		atomic.AddInt64(&r.DeletedPhotos, 1)
		return nil
	}
	dst, err := objects.Head(ctx, m.NewKey)
	if errors.Is(err, objstore.ErrNotFound) {
		// A key the row still points at is reported by the row check; one no
		// row references was most likely deleted by the application.
		if !row.References(m.NewKey) {
			atomic.AddInt64(&r.Missing, 1)
		}
		if m.DeletedAt == nil {
			r.repair(m.PhotoID)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if ok, _ := objstore.MatchesRecord(dst, objstore.Record{Size: m.Size, ETag: m.ETag, Algorithm: m.ChecksumAlgorithm, Checksum: m.Checksum}); !ok {
		// Only the application and keymigrate write under users/: these are
		// the application's newer bytes.
		atomic.AddInt64(&r.Rewritten, 1)
		return nil
	}
	if m.DeletedAt != nil {
		atomic.AddInt64(&r.LegacyDeleted, 1)
		return nil
	}
	src, err := objects.Head(ctx, m.OldKey)
	if errors.Is(err, objstore.ErrNotFound) {
		if m.DeleteIntentAt != nil {
			// Cleanup deleted it and stopped before recording so: its next
			// pass records it.
			atomic.AddInt64(&r.LegacyDeleted, 1)
			return nil
		}
		r.add(Problem{Kind: LegacyObjectMissing, PhotoID: m.PhotoID, Key: m.OldKey, Detail: "the legacy object is gone although cleanup never deleted it"})
		return nil
	}
	if err != nil {
		return err
	}
	atomic.AddInt64(&r.LegacyPresent, 1)
	if m.SourceETag != "" && src.ETag != m.SourceETag {
		r.add(Problem{Kind: LegacyChangedAfterMove, PhotoID: m.PhotoID, Key: m.OldKey, Detail: fmt.Sprintf("ETag %s, but %s was copied from %s: the copy is stale", src.ETag, m.NewKey, m.SourceETag)})
		return nil
	}
	if !o.Deep {
		return nil
	}
	v, err := objects.Verify(ctx, src, dst)
	if err != nil {
		return err
	}
	atomic.AddInt64(&r.DeepCompared, 1)
	if !v.Equal {
		r.add(Problem{Kind: CopyDiffersFromLegacy, PhotoID: m.PhotoID, Key: m.NewKey, Detail: fmt.Sprintf("differs from %s: %s", m.OldKey, v.Reason)})
	}
	return nil
}

// checkRows walks the photos table.
func checkRows(ctx context.Context, store *ledger.Store, objects *objstore.Store, o Options, r *Report, tick func()) error {
	after := ""
	for {
		var photos []ledger.Photo
		var err error
		next := ""
		if o.RunID != "" {
			photos, next, err = store.RunScanRows(ctx, o.RunID, after, page)
		} else {
			photos, err = store.PhotoScanAll(ctx, after, page)
		}
		if err != nil {
			return err
		}
		if len(photos) == 0 && next == "" {
			return nil
		}
		lost, err := derivedLost(ctx, store, photos)
		if err != nil {
			return err
		}
		ids := make([]string, len(photos))
		for i, p := range photos {
			ids[i] = p.ID
		}
		purged, err := store.PurgeListDone(ctx, ids)
		if err != nil {
			return err
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(o.Concurrency)
		for _, p := range photos {
			if purged[p.ID] {
				atomic.AddInt64(&r.RowsChecked, 1)
				atomic.AddInt64(&r.PurgedRows, 1)
				tick()
				continue
			}
			g.Go(func() error {
				defer tick()
				return checkRow(gctx, objects, r, p, lost)
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		if next == "" {
			next = photos[len(photos)-1].ID
		}
		after = next
	}
}

// legacyJobs returns the jobs named by a row's legacy key columns.
func legacyJobs(p ledger.Photo) []string {
	var jobs []string
	for _, k := range p.Columns() {
		if l, err := keylayout.ParseLegacy(k); err == nil {
			jobs = append(jobs, l.JobID)
		}
	}
	return jobs
}

// derivedLost maps the jobs of rows that still reference legacy keys to the
// legacy objects of those jobs that cleanup deleted: a row that has not been
// migrated still derives its job's metadata and animations.
func derivedLost(ctx context.Context, store *ledger.Store, photos []ledger.Photo) (map[string][]string, error) {
	var jobs []string
	for _, p := range photos {
		jobs = append(jobs, legacyJobs(p)...)
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	return store.ObjectMoveDeletedLegacyKeys(ctx, jobs)
}

func checkRow(ctx context.Context, objects *objstore.Store, r *Report, p ledger.Photo, lost map[string][]string) error {
	atomic.AddInt64(&r.RowsChecked, 1)
	archived := p.Status != nil && *p.Status == ledger.ArchivedStatus
	if archived {
		atomic.AddInt64(&r.ArchivedRows, 1)
	}
	for _, k := range p.Columns() {
		if !keylayout.IsUserScoped(k) {
			if !archived {
				r.add(Problem{Kind: LegacyKeyReferenced, PhotoID: p.ID, Key: k, Detail: "the row still references a legacy key"})
			}
			// Archived and not-yet-migrated rows still need their legacy
			// objects: one that is gone is lost to them.
			ok, err := objects.Exists(ctx, k)
			if err != nil {
				return err
			}
			if !ok {
				r.add(Problem{Kind: ReferencedKeyMissing, PhotoID: p.ID, Key: k, Detail: "the row references a legacy key with no object"})
			}
			continue
		}
		owner := ""
		if p.OwnerID != nil {
			owner = *p.OwnerID
		}
		if err := keylayout.CheckUserKey(k, owner); err != nil {
			r.add(Problem{Kind: KeyOutsideOwnerPrefix, PhotoID: p.ID, Key: k, Detail: err.Error()})
			continue
		}
		ok, err := objects.Exists(ctx, k)
		if err != nil {
			return err
		}
		if !ok {
			r.add(Problem{Kind: ReferencedKeyMissing, PhotoID: p.ID, Key: k, Detail: "the row points at a key with no object"})
			r.repair(p.ID)
		}
	}
	seen := map[string]bool{}
	for _, j := range legacyJobs(p) {
		for _, k := range lost[j] {
			if seen[k] {
				continue
			}
			seen[k] = true
			if l, err := keylayout.ParseLegacy(k); err == nil && (l.Kind == keylayout.KindMetadata || l.Kind == keylayout.KindAnimation) {
				r.add(Problem{Kind: LegacyObjectMissing, PhotoID: p.ID, Key: k, Detail: "cleanup deleted this legacy object, which the row, not migrated yet, still derives from its job"})
			}
		}
	}
	return nil
}

// checkLegacy walks every legacy object. Each must be accounted for: moved
// (in the ledger), referenced by a row that still uses the flat layout, or an
// animation or metadata object of such a row's job. An animation or metadata
// object of a migrated photo's job that was never moved (written under the old
// layout after the swap) is a problem, and its photo can be re-enqueued.
// Anything else is an orphan: reported, never a failure, never deleted.
func checkLegacy(ctx context.Context, store *ledger.Store, objects *objstore.Store, o Options, r *Report) error {
	rowKeys := map[string]bool{}
	rowJobs := map[string]bool{}
	err := store.PhotoEachLegacy(ctx, func(p ledger.Photo) error {
		for _, k := range []*string{&p.Original, p.Processed, p.Thumbnail} {
			if k == nil || keylayout.IsUserScoped(*k) {
				continue
			}
			rowKeys[*k] = true
			if l, err := keylayout.ParseLegacy(*k); err == nil {
				rowJobs[l.JobID] = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	requeue := map[string]bool{}
	var pageKeys []string
	flush := func() error {
		if len(pageKeys) == 0 {
			return nil
		}
		defer func() { pageKeys = pageKeys[:0] }()
		moved, err := store.ObjectMoveOldKeysMoved(ctx, pageKeys)
		if err != nil {
			return err
		}
		type cand struct {
			key string
			l   keylayout.Legacy
			ok  bool
		}
		var rest []cand
		var jobs []string
		for _, k := range pageKeys {
			if moved[k] || rowKeys[k] {
				continue
			}
			l, err := keylayout.ParseLegacy(k)
			if err == nil && (l.Kind == keylayout.KindAnimation || l.Kind == keylayout.KindMetadata) && rowJobs[l.JobID] {
				continue // belongs to a photo not migrated (archived, failed, pending)
			}
			rest = append(rest, cand{k, l, err == nil})
			if err == nil {
				jobs = append(jobs, l.JobID)
			}
		}
		if len(rest) == 0 {
			return nil
		}
		migrated, err := store.PhotoMoveMigratedJobs(ctx, jobs)
		if err != nil {
			return err
		}
		for _, c := range rest {
			photo, ok := migrated[c.l.JobID]
			if c.ok && ok && (c.l.Kind == keylayout.KindAnimation || c.l.Kind == keylayout.KindMetadata) {
				r.add(Problem{Kind: UnmovedLegacyObject, PhotoID: photo, Key: c.key, Detail: "a legacy object of a migrated photo that was never moved (verify --requeue enqueues the photo)"})
				requeue[photo] = true
				continue
			}
			r.OrphanCount++
			if len(r.Orphans) < o.MaxProblems {
				r.Orphans = append(r.Orphans, c.key)
			}
		}
		return nil
	}
	for _, prefix := range LegacyPrefixes {
		err := objects.ListEach(ctx, prefix, func(k string, _ int64, _ string) error {
			pageKeys = append(pageKeys, k)
			if len(pageKeys) == 1000 {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
	}
	for p := range requeue {
		r.requeue(p)
	}
	sort.Strings(r.Requeue)
	return nil
}
