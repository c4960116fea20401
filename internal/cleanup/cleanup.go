// Package cleanup is Phase 4: it deletes legacy objects, and only those the
// ledger recorded as moved, whose photo was swapped at least a grace period ago,
// whose row no longer references them, whose legacy object is still the one
// that was copied (same ETag), and whose new copy is verified again, right
// before the delete, against the size and checksum the ledger recorded.
// Anything that fails a check is reported and kept. Deletions are batched
// (DeleteObjects, up to 1,000 keys), recorded one by one, and the work resumes
// where it stopped because the ledger is the cursor.
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/ledger"
	"github.com/keymigrate/keymigrate/internal/objstore"
)

// Options tune a cleanup.
type Options struct {
	Grace       time.Duration
	DryRun      bool
	Batch       int // keys per DeleteObjects call (at most 1,000)
	Concurrency int // HEADs in flight
	// Progress, if set, is called after each batch with the totals so far.
	Progress func(r *Report)
}

// Skip is a legacy object kept, and why.
type Skip struct {
	PhotoID string `json:"photo_id"`
	OldKey  string `json:"old_key"`
	NewKey  string `json:"new_key"`
	Reason  string `json:"reason"`
}

// Report says what cleanup deleted (or, dry, would delete).
type Report struct {
	Deleted     int      `json:"deleted"`
	Bytes       int64    `json:"bytes"`
	Skipped     []Skip   `json:"skipped"`
	DryRun      bool     `json:"dry_run"`
	WouldDelete []string `json:"would_delete,omitempty"`
	mu          sync.Mutex
}

func (r *Report) skip(s Skip) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Skipped = append(r.Skipped, s)
}

// Run deletes what may be deleted.
func Run(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options) (*Report, error) {
	if o.Grace < 0 {
		return nil, errors.New("the grace period cannot be negative")
	}
	if o.Batch <= 0 || o.Batch > 1000 {
		o.Batch = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	rep := &Report{DryRun: o.DryRun, Skipped: []Skip{}}
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("cleanup interrupted (run it again to resume): %w", err)
		}
		batch, err := st.CleanupCandidates(ctx, o.Grace, after, o.Batch)
		if err != nil {
			return rep, err
		}
		if len(batch) == 0 {
			return rep, nil
		}
		after = batch[len(batch)-1].NewKey
		ok, err := check(ctx, st, objects, o, batch, rep)
		if err != nil {
			return rep, err
		}
		if len(ok) == 0 {
			continue
		}
		if o.DryRun {
			for _, m := range ok {
				rep.WouldDelete = append(rep.WouldDelete, m.OldKey)
				rep.Bytes += m.Size
			}
			rep.Deleted += len(ok)
			continue
		}
		keys := make([]string, len(ok))
		for i, m := range ok {
			keys[i] = m.OldKey
		}
		failed, err := objects.DeleteBatch(ctx, keys)
		if err != nil {
			return rep, err
		}
		var done []string
		for _, m := range ok {
			if why, bad := failed[m.OldKey]; bad {
				rep.skip(Skip{PhotoID: m.PhotoID, OldKey: m.OldKey, NewKey: m.NewKey, Reason: "delete failed: " + why})
				continue
			}
			done = append(done, m.NewKey)
			rep.Deleted++
			rep.Bytes += m.Size
		}
		if err := st.MarkDeleted(ctx, done); err != nil {
			return rep, err
		}
		if o.Progress != nil {
			o.Progress(rep)
		}
	}
}

// check runs the per-object checks concurrently and returns the moves whose
// legacy object may be deleted.
func check(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options, batch []ledger.MovedObject, rep *Report) ([]ledger.MovedObject, error) {
	rows := map[string]ledger.Photo{}
	for _, m := range batch {
		if _, seen := rows[m.PhotoID]; seen {
			continue
		}
		p, err := st.LoadPhoto(ctx, m.PhotoID)
		if err != nil {
			return nil, err
		}
		rows[m.PhotoID] = p
	}
	keep := make([]bool, len(batch))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for i, m := range batch {
		g.Go(func() error {
			skip := func(why string) { rep.skip(Skip{PhotoID: m.PhotoID, OldKey: m.OldKey, NewKey: m.NewKey, Reason: why}) }
			p := rows[m.PhotoID]
			for _, k := range []*string{&p.Original, p.Processed, p.Thumbnail} {
				if k != nil && *k == m.OldKey {
					skip("the photo's row references the legacy key again")
					return nil
				}
			}
			dst, err := objects.Head(gctx, m.NewKey)
			if errors.Is(err, objstore.ErrNotFound) {
				skip("the new copy is missing")
				return nil
			}
			if err != nil {
				return err
			}
			if ok, why := objstore.MatchesRecord(dst, objstore.Record{Size: m.Size, ETag: m.ETag, Algorithm: m.ChecksumAlgorithm, Checksum: m.Checksum}); !ok {
				skip("the new copy differs: " + why)
				return nil
			}
			src, err := objects.Head(gctx, m.OldKey)
			if errors.Is(err, objstore.ErrNotFound) {
				skip("the legacy object is already gone")
				return nil
			}
			if err != nil {
				return err
			}
			if m.SourceETag != "" && src.ETag != m.SourceETag {
				skip(fmt.Sprintf("the legacy object changed after it was moved (ETag %s, moved %s): migrate it again", src.ETag, m.SourceETag))
				return nil
			}
			keep[i] = true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var ok []ledger.MovedObject
	for i, m := range batch {
		if keep[i] {
			ok = append(ok, m)
		}
	}
	return ok, nil
}
