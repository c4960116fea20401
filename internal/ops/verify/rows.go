package verify

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// rowsPhase walks the shard's range of the photos table by id.
func (p *pass) rowsPhase(ctx context.Context) error {
	lower, upper, empty := keyRange(p.ranges.Photos, p.o.Shard)
	if empty {
		return nil
	}
	for {
		var photos []ledger.Photo
		var err error
		next := ""
		switch {
		case p.o.RunID != "" && p.o.Shards > 1:
			photos, next, err = p.store.RunScanRowsShard(ctx, p.o.RunID, p.o.Shard, p.o.Shards, p.pos.After, page)
		case p.o.RunID != "":
			photos, next, err = p.store.RunScanRows(ctx, p.o.RunID, p.pos.After, page)
		default:
			photos, err = p.store.PhotoScanShard(ctx, lower, p.pos.After, upper, page)
		}
		if err != nil {
			return err
		}
		if len(photos) == 0 && next == "" {
			return nil
		}
		d, err := p.checkRows(ctx, photos)
		if err != nil {
			return err
		}
		if next == "" {
			next = photos[len(photos)-1].ID
		}
		if err := p.save(ctx, d, func(pos *position) { pos.After = next }); err != nil {
			return err
		}
	}
}

// rowPage is what the checks of one page of rows look up in bulk.
type rowPage struct {
	lost      map[string][]string
	purged    map[string]bool
	moved     map[string]bool // user-scoped keys checked by the objects phase
	inventory map[string]ledger.InventoryObject
}

func (p *pass) lookUpRows(ctx context.Context, photos []ledger.Photo) (rowPage, error) {
	var lp rowPage
	var err error
	if lp.lost, err = derivedLost(ctx, p.store, photos); err != nil {
		return lp, err
	}
	ids := make([]string, len(photos))
	var userKeys, allKeys []string
	for i, ph := range photos {
		ids[i] = ph.ID
		for _, k := range ph.Columns() {
			allKeys = append(allKeys, k)
			if keylayout.IsUserScoped(k) {
				userKeys = append(userKeys, k)
			}
		}
	}
	if lp.purged, err = p.store.PurgeListDone(ctx, ids); err != nil {
		return lp, err
	}
	if len(userKeys) > 0 {
		if lp.moved, err = p.store.ObjectMoveCommittedNewKeys(ctx, userKeys); err != nil {
			return lp, err
		}
	}
	lp.inventory, err = p.inventory(ctx, allKeys)
	return lp, err
}

func (p *pass) checkRows(ctx context.Context, photos []ledger.Photo) (*Report, error) {
	lp, err := p.lookUpRows(ctx, photos)
	if err != nil {
		return nil, err
	}
	d := p.page()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.o.Concurrency)
	for _, ph := range photos {
		if lp.purged[ph.ID] {
			atomic.AddInt64(&d.RowsChecked, 1)
			atomic.AddInt64(&d.PurgedRows, 1)
			p.tick()
			continue
		}
		g.Go(func() error {
			defer p.tick()
			return p.checkRow(gctx, d, ph, lp)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return d, p.settlePurged(ctx, d)
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

func (p *pass) checkRow(ctx context.Context, d *Report, ph ledger.Photo, lp rowPage) error {
	atomic.AddInt64(&d.RowsChecked, 1)
	archived := ph.Status != nil && *ph.Status == ledger.ArchivedStatus
	if archived {
		atomic.AddInt64(&d.ArchivedRows, 1)
	}
	for _, k := range ph.Columns() {
		if !keylayout.IsUserScoped(k) {
			if !archived {
				d.add(Problem{Kind: LegacyKeyReferenced, PhotoID: ph.ID, Key: k, Detail: "the row still references a legacy key"})
			}
			// Archived and not-yet-migrated rows still need their legacy
			// objects: one that is gone is lost to them. One the ledger
			// says cleanup deleted is asked of S3, whatever a report says.
			inv := lp.inventory
			if l, err := keylayout.ParseLegacy(k); err == nil && contains(lp.lost[l.JobID], k) {
				inv = nil
			}
			ok, err := p.exists(ctx, d, inv, k)
			if err != nil {
				return err
			}
			switch {
			case ok:
			case archived:
				// An archived row whose purge is not complete (purge kept
				// what another row still needs, and deleted the rest):
				// its references to what purge deleted await the
				// application's DELETE, as a purged row's do (F14).
				d.addUnlessPurged(Problem{Kind: ReferencedKeyMissing, PhotoID: ph.ID, Key: k, Detail: "the archived row references a legacy key with no object, which archived purge did not delete"})
			default:
				d.add(Problem{Kind: ReferencedKeyMissing, PhotoID: ph.ID, Key: k, Detail: "the row references a legacy key with no object"})
			}
			continue
		}
		owner := ""
		if ph.OwnerID != nil {
			owner = *ph.OwnerID
		}
		if err := keylayout.CheckUserKey(k, owner); err != nil {
			d.add(Problem{Kind: KeyOutsideOwnerPrefix, PhotoID: ph.ID, Key: k, Detail: err.Error()})
			continue
		}
		if lp.moved[k] {
			continue // a committed move: the objects phase HEADs it, once
		}
		ok, err := p.exists(ctx, d, lp.inventory, k)
		if err != nil {
			return err
		}
		if !ok {
			d.add(Problem{Kind: ReferencedKeyMissing, PhotoID: ph.ID, Key: k, Detail: "the row points at a key with no object"})
			d.repair(ph.ID)
		}
	}
	seen := map[string]bool{}
	for _, j := range legacyJobs(ph) {
		for _, k := range lp.lost[j] {
			if seen[k] {
				continue
			}
			seen[k] = true
			if l, err := keylayout.ParseLegacy(k); err == nil && (l.Kind == keylayout.KindMetadata || l.Kind == keylayout.KindAnimation) {
				d.add(Problem{Kind: LegacyObjectMissing, PhotoID: ph.ID, Key: k, Detail: "cleanup deleted this legacy object, which the row, not migrated yet, still derives from its job"})
			}
		}
	}
	return nil
}
