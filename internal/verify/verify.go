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
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/keylayout"
	"github.com/keymigrate/keymigrate/internal/ledger"
	"github.com/keymigrate/keymigrate/internal/objstore"
)

// The kinds of problem verify reports.
const (
	LegacyKeyReferenced   = "legacy_key_referenced"
	KeyOutsideOwnerPrefix = "key_outside_owner_prefix"
	ReferencedKeyMissing  = "referenced_key_missing"
	MovedObjectMissing    = "moved_object_missing"
	MovedObjectDiffers    = "moved_object_differs"
	LegacyObjectMissing   = "legacy_object_missing"
	CopyDiffersFromLegacy = "copy_differs_from_legacy"
)

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
	mu             sync.Mutex
	maxProblems    int
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

const page = 500

// Run verifies the migration.
func Run(ctx context.Context, store *ledger.Store, objects *objstore.Store, o Options) (*Report, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.MaxProblems <= 0 {
		o.MaxProblems = 100
	}
	r := &Report{maxProblems: o.MaxProblems, ProblemsByKind: map[string]int64{}, Problems: []Problem{}}
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
	return r, nil
}

type movedObject struct {
	photoID, kind, oldKey, newKey, etag, algorithm, checksum string
	size                                                     int64
	deleted                                                  bool
}

// checkObjects walks the committed moves in the ledger.
func checkObjects(ctx context.Context, store *ledger.Store, objects *objstore.Store, o Options, r *Report, tick func()) error {
	after := ""
	for {
		rows, err := store.Pool().Query(ctx, `
SELECT photo_id, kind, old_key, new_key, coalesce(etag, ''), coalesce(checksum_algorithm, ''), coalesce(checksum, ''), size, deleted_at IS NOT NULL
  FROM keymigrate.object_moves WHERE committed_at IS NOT NULL AND new_key > $1 ORDER BY new_key LIMIT $2`, after, page)
		if err != nil {
			return fmt.Errorf("read moved objects: %w", err)
		}
		var batch []movedObject
		for rows.Next() {
			var m movedObject
			if err := rows.Scan(&m.photoID, &m.kind, &m.oldKey, &m.newKey, &m.etag, &m.algorithm, &m.checksum, &m.size, &m.deleted); err != nil {
				rows.Close()
				return fmt.Errorf("read moved objects: %w", err)
			}
			batch = append(batch, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read moved objects: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(o.Concurrency)
		for _, m := range batch {
			g.Go(func() error {
				defer tick()
				return checkObject(gctx, objects, o, r, m)
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		after = batch[len(batch)-1].newKey
	}
}

func checkObject(ctx context.Context, objects *objstore.Store, o Options, r *Report, m movedObject) error {
	atomic.AddInt64(&r.ObjectsChecked, 1)
	dst, err := objects.Head(ctx, m.newKey)
	if errors.Is(err, objstore.ErrNotFound) {
		r.add(Problem{Kind: MovedObjectMissing, PhotoID: m.photoID, Key: m.newKey, Detail: fmt.Sprintf("moved from %s, but nothing is at the new key", m.oldKey)})
		return nil
	}
	if err != nil {
		return err
	}
	if dst.Size != m.size {
		r.add(Problem{Kind: MovedObjectDiffers, PhotoID: m.photoID, Key: m.newKey, Detail: fmt.Sprintf("size %d, the ledger recorded %d", dst.Size, m.size)})
		return nil
	}
	if got, ok := dst.Checksums[typesAlg(m.algorithm)]; ok && m.checksum != "" {
		if got != m.checksum {
			r.add(Problem{Kind: MovedObjectDiffers, PhotoID: m.photoID, Key: m.newKey, Detail: fmt.Sprintf("%s checksum %s, the ledger recorded %s", m.algorithm, got, m.checksum)})
			return nil
		}
	} else if m.etag != "" && dst.ETag != m.etag {
		r.add(Problem{Kind: MovedObjectDiffers, PhotoID: m.photoID, Key: m.newKey, Detail: fmt.Sprintf("ETag %s, the ledger recorded %s", dst.ETag, m.etag)})
		return nil
	}
	if m.deleted {
		atomic.AddInt64(&r.LegacyDeleted, 1)
		return nil
	}
	src, err := objects.Head(ctx, m.oldKey)
	if errors.Is(err, objstore.ErrNotFound) {
		r.add(Problem{Kind: LegacyObjectMissing, PhotoID: m.photoID, Key: m.oldKey, Detail: "the legacy object is gone although cleanup never deleted it"})
		return nil
	}
	if err != nil {
		return err
	}
	atomic.AddInt64(&r.LegacyPresent, 1)
	if !o.Deep {
		return nil
	}
	v, err := objects.Verify(ctx, src, dst)
	if err != nil {
		return err
	}
	atomic.AddInt64(&r.DeepCompared, 1)
	if !v.Equal {
		r.add(Problem{Kind: CopyDiffersFromLegacy, PhotoID: m.photoID, Key: m.newKey, Detail: fmt.Sprintf("differs from %s: %s", m.oldKey, v.Reason)})
	}
	return nil
}

// checkRows walks the photos table.
func checkRows(ctx context.Context, store *ledger.Store, objects *objstore.Store, o Options, r *Report, tick func()) error {
	after := ""
	for {
		var photos []ledger.Photo
		var err error
		photos, err = store.ScanAll(ctx, after, page)
		if err != nil {
			return err
		}
		if len(photos) == 0 {
			return nil
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(o.Concurrency)
		for _, p := range photos {
			g.Go(func() error {
				defer tick()
				return checkRow(gctx, objects, r, p)
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		after = photos[len(photos)-1].ID
	}
}

func checkRow(ctx context.Context, objects *objstore.Store, r *Report, p ledger.Photo) error {
	atomic.AddInt64(&r.RowsChecked, 1)
	if p.Status != nil && *p.Status == ledger.ArchivedStatus {
		atomic.AddInt64(&r.ArchivedRows, 1)
		return nil
	}
	for _, k := range []*string{&p.Original, p.Processed, p.Thumbnail} {
		if k == nil {
			continue
		}
		if !keylayout.IsUserScoped(*k) {
			r.add(Problem{Kind: LegacyKeyReferenced, PhotoID: p.ID, Key: *k, Detail: "the row still references a legacy key"})
			continue
		}
		owner := ""
		if p.OwnerID != nil {
			owner = *p.OwnerID
		}
		if err := keylayout.CheckUserKey(*k, owner); err != nil {
			r.add(Problem{Kind: KeyOutsideOwnerPrefix, PhotoID: p.ID, Key: *k, Detail: err.Error()})
			continue
		}
		ok, err := objects.Exists(ctx, *k)
		if err != nil {
			return err
		}
		if !ok {
			r.add(Problem{Kind: ReferencedKeyMissing, PhotoID: p.ID, Key: *k, Detail: "the row points at a key with no object"})
		}
	}
	return nil
}

func typesAlg(s string) types.ChecksumAlgorithm { return types.ChecksumAlgorithm(s) }
