package verify

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// objectsPhase walks the shard's range of the committed moves in the
// ledger, a page at a time, checking a page's objects concurrently.
func (p *pass) objectsPhase(ctx context.Context) error {
	if p.o.RunID != "" && p.o.Shards > 1 {
		return p.runObjectsPhase(ctx)
	}
	lower, upper, empty := keyRange(p.ranges.Objects, p.o.Shard)
	if empty {
		return nil
	}
	for {
		var batch []ledger.ObjectMove
		var err error
		if p.o.RunID != "" {
			batch, err = p.store.ObjectMoveListCommittedOfRun(ctx, p.o.RunID, p.pos.After, page)
		} else {
			batch, err = p.store.ObjectMoveListCommittedRange(ctx, lower, p.pos.After, upper, page)
		}
		if err != nil || len(batch) == 0 {
			return err
		}
		d, err := p.checkObjects(ctx, batch)
		if err != nil {
			return err
		}
		last := batch[len(batch)-1].NewKey
		if err := p.save(ctx, d, func(pos *position) { pos.After = last }); err != nil {
			return err
		}
	}
}

// runObjectsPhase is the objects phase of a shard of a pass scoped to a
// run: the committed moves of the shard's photos of the run (a hash of the
// photo id picks them: ledger/runshards.go), a page of photos at a time, its
// cursor the last photo id of the page. (An unsharded pass over a run keeps
// its cursor by new key, as before: a pass in progress resumes unchanged.)
func (p *pass) runObjectsPhase(ctx context.Context) error {
	for {
		ids, err := p.store.RunPhotoIDsShard(ctx, p.o.RunID, p.o.Shard, p.o.Shards, p.pos.After, page)
		if err != nil || len(ids) == 0 {
			return err
		}
		batch, err := p.store.ObjectMoveListCommittedOfPhotos(ctx, ids)
		if err != nil {
			return err
		}
		d := p.page()
		if len(batch) > 0 {
			if d, err = p.checkObjects(ctx, batch); err != nil {
				return err
			}
		}
		last := ids[len(ids)-1]
		if err := p.save(ctx, d, func(pos *position) { pos.After = last }); err != nil {
			return err
		}
	}
}

// checkObjects checks one page of moves, its HEADs in flight together.
func (p *pass) checkObjects(ctx context.Context, batch []ledger.ObjectMove) (*Report, error) {
	d := p.page()
	ids := make([]string, 0, len(batch))
	keys := make([]string, 0, 2*len(batch))
	for _, m := range batch {
		ids = append(ids, m.PhotoID)
		keys = append(keys, m.NewKey, m.OldKey)
	}
	rows, err := p.store.PhotoGetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	inv, err := p.inventory(ctx, keys)
	if err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.o.Concurrency)
	for _, m := range batch {
		row, live := rows[m.PhotoID]
		g.Go(func() error {
			defer p.tick()
			return p.checkObject(gctx, d, inv, m, row, live)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return d, p.settlePurged(ctx, d)
}

// inventory reads the page's keys from the loaded inventory (nil without one,
// or with --deep, which needs the objects' headers).
func (p *pass) inventory(ctx context.Context, keys []string) (map[string]ledger.InventoryObject, error) {
	if p.o.Inventory == nil || p.o.Deep || len(keys) == 0 {
		return nil, nil
	}
	return p.store.InventoryGetMany(ctx, *p.o.Inventory, keys)
}

// head returns what key holds: from the inventory when it lists the key as
// expected (agrees) and the ledger did not write it after the report's date
// (writtenAt), else from a HEAD. An inventory only ever vouches for what the
// ledger expects: anything else (absent, another size or ETag, written
// since) is asked of S3, so a problem is only ever reported from a HEAD.
func (p *pass) head(ctx context.Context, d *Report, inv map[string]ledger.InventoryObject, key string, writtenAt *time.Time, agrees func(objstore.Info) bool) (objstore.Info, error) {
	if o, ok := inv[key]; ok && (writtenAt == nil || writtenAt.Before(p.o.Inventory.CreatedAt)) {
		info := objstore.Info{Key: o.Key, Size: o.Size, ETag: o.ETag}
		if agrees(info) {
			atomic.AddInt64(&d.Vouched, 1)
			return info, nil
		}
	}
	atomic.AddInt64(&d.Heads, 1)
	return p.objects.Head(ctx, key)
}

// exists is head for a key the ledger has no record of (a row's legacy key, a
// key the application wrote): the inventory vouches by listing it.
func (p *pass) exists(ctx context.Context, d *Report, inv map[string]ledger.InventoryObject, key string) (bool, error) {
	_, err := p.head(ctx, d, inv, key, nil, func(objstore.Info) bool { return true })
	if errors.Is(err, objstore.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// heads returns the new copy of a move and, when the check needs it (cleanup
// has not deleted it), its legacy source: both requests at once.
func (p *pass) heads(ctx context.Context, d *Report, inv map[string]ledger.InventoryObject, m ledger.ObjectMove) (dst objstore.Info, dstErr error, src objstore.Info, srcErr error) {
	record := objstore.Record{Size: m.Size, ETag: m.ETag, Algorithm: m.ChecksumAlgorithm, Checksum: m.Checksum}
	matches := func(i objstore.Info) bool { ok, _ := objstore.MatchesRecord(i, record); return ok }
	if m.DeletedAt != nil {
		dst, dstErr = p.head(ctx, d, inv, m.NewKey, m.CommittedAt, matches)
		return dst, dstErr, src, nil
	}
	// A legacy object cleanup meant to delete (whenever) is asked of S3: the
	// deletion may have come after the report.
	srcInv := inv
	if m.DeleteIntentAt != nil {
		srcInv = nil
	}
	sameSource := func(i objstore.Info) bool { return m.SourceETag == "" || i.ETag == m.SourceETag }
	done := make(chan struct{})
	go func() {
		defer close(done)
		src, srcErr = p.head(ctx, d, srcInv, m.OldKey, nil, sameSource)
	}()
	dst, dstErr = p.head(ctx, d, inv, m.NewKey, m.CommittedAt, matches)
	<-done
	return dst, dstErr, src, srcErr
}

func (p *pass) checkObject(ctx context.Context, d *Report, inv map[string]ledger.InventoryObject, m ledger.ObjectMove, row ledger.Photo, live bool) error {
	atomic.AddInt64(&d.ObjectsChecked, 1)
	switch {
	case m.NewDeletedAt != nil:
		return nil // rolled back with --delete-new
	case m.Superseded:
		atomic.AddInt64(&d.Superseded, 1)
		return nil
	case !live:
		// The application deleted the photo: its new copies went with it.
		atomic.AddInt64(&d.DeletedPhotos, 1)
		return nil
	}
	dst, err, src, srcErr := p.heads(ctx, d, inv, m)
	if errors.Is(err, objstore.ErrNotFound) {
		// A key the row points at is checked here, once: the row check
		// does not HEAD it again. One no row references was most likely
		// deleted by the application.
		if row.References(m.NewKey) {
			d.add(Problem{Kind: ReferencedKeyMissing, PhotoID: m.PhotoID, Key: m.NewKey, Detail: "the row points at a key with no object"})
		} else {
			atomic.AddInt64(&d.Missing, 1)
		}
		if m.DeletedAt == nil || row.References(m.NewKey) {
			d.repair(m.PhotoID)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if ok, _ := objstore.MatchesRecord(dst, objstore.Record{Size: m.Size, ETag: m.ETag, Algorithm: m.ChecksumAlgorithm, Checksum: m.Checksum}); !ok {
		// Only the application and keymigrate write under users/: these are
		// the application's newer bytes.
		atomic.AddInt64(&d.Rewritten, 1)
		return nil
	}
	if m.DeletedAt != nil {
		atomic.AddInt64(&d.LegacyDeleted, 1)
		return nil
	}
	return p.checkSource(ctx, d, m, dst, src, srcErr)
}

// checkSource checks the legacy object of a move that cleanup did not delete.
func (p *pass) checkSource(ctx context.Context, d *Report, m ledger.ObjectMove, dst, src objstore.Info, err error) error {
	if errors.Is(err, objstore.ErrNotFound) {
		if m.DeleteIntentAt != nil {
			// Cleanup deleted it and stopped before recording so: its next
			// pass records it.
			atomic.AddInt64(&d.LegacyDeleted, 1)
			return nil
		}
		// Unless `archived purge` deleted it: an archived row of the job
		// needed it no longer once this photo had its own copy, and purge
		// records its deletions against the archived photo (F14).
		d.addUnlessPurged(Problem{Kind: LegacyObjectMissing, PhotoID: m.PhotoID, Key: m.OldKey, Detail: "the legacy object is gone although neither cleanup nor archived purge deleted it"})
		return nil
	}
	if err != nil {
		return err
	}
	atomic.AddInt64(&d.LegacyPresent, 1)
	if m.SourceETag != "" && src.ETag != m.SourceETag {
		d.add(Problem{Kind: LegacyChangedAfterMove, PhotoID: m.PhotoID, Key: m.OldKey, Detail: fmt.Sprintf("ETag %s, but %s was copied from %s: the copy is stale", src.ETag, m.NewKey, m.SourceETag)})
		return nil
	}
	if !p.o.Deep {
		return nil
	}
	v, err := p.objects.Verify(ctx, src, dst)
	if err != nil {
		return err
	}
	atomic.AddInt64(&d.DeepCompared, 1)
	if !v.Equal {
		d.add(Problem{Kind: CopyDiffersFromLegacy, PhotoID: m.PhotoID, Key: m.NewKey, Detail: fmt.Sprintf("differs from %s: %s", m.OldKey, v.Reason)})
	}
	return nil
}
