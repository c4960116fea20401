package verify

import (
	"context"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// listRange is one key range of a legacy prefix, listed on its own (as plan
// does), so that the prefixes are listed in parallel and split across
// shards. Each legacy prefix p is cut into one range per printable ASCII
// character c (keys starting with p+c), the keys before p+" " and the keys
// after every p+"~"…: together they cover every key under p exactly once.
type listRange struct {
	list       string // the prefix listed
	startAfter string
	stopAt     string // the range ends at the first key >= stopAt ("" : no end)
	skip       string // keys with this prefix belong to another range
}

// listRanges returns every range of the legacy prefixes, in a fixed order:
// shard i of n lists the ranges whose index is i modulo n.
func listRanges() []listRange {
	var out []listRange
	for _, p := range LegacyPrefixes {
		out = append(out, listRange{list: p, stopAt: p + " "})
		for c := byte(' '); c <= '~'; c++ {
			switch c {
			case '.':
				// MinIO refuses a prefix or start-after ending in a "."
				// path component (XMinioInvalidResourceName): the keys
				// starting with p+"." and p+"/" are one range, listed from
				// after p+"-" (the keys starting with p+"-" skipped: the
				// '-' range has them) up to p+"0".
				out = append(out, listRange{list: p, startAfter: p + "-", skip: p + "-", stopAt: p + "0"})
			case '/':
			default:
				out = append(out, listRange{list: p + string(c)})
			}
		}
		out = append(out, listRange{list: p, startAfter: p + "~", skip: p + "~"})
	}
	return out
}

// listPage is the page size of a listing (S3's maximum) and of an inventory
// read.
const listPage = 1000

// legacyPhase lists the shard's ranges of the legacy prefixes, several at
// once, and accounts for every legacy object, a page at a time.
func (p *pass) legacyPhase(ctx context.Context) error {
	if p.o.RunID != "" {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, min(8, p.o.Concurrency/2)))
	for i, rg := range listRanges() {
		if i%p.o.Shards != p.o.Shard {
			continue
		}
		p.mu.Lock()
		done, after := p.pos.Done[i], p.pos.Lists[i]
		p.mu.Unlock()
		if done {
			continue
		}
		g.Go(func() error { return p.listRange(gctx, i, rg, after) })
	}
	return g.Wait()
}

// listRange lists range i from after (its last key finished, or "").
func (p *pass) listRange(ctx context.Context, i int, rg listRange, after string) error {
	if after == "" {
		after = rg.startAfter
	}
	for {
		keys, more, err := p.listOnePage(ctx, rg, after)
		if err != nil {
			return err
		}
		var mine []string
		for _, k := range keys {
			if rg.stopAt != "" && k >= rg.stopAt {
				more = false
				break
			}
			if rg.skip == "" || !strings.HasPrefix(k, rg.skip) {
				mine = append(mine, k)
			}
		}
		d, err := p.accountFor(ctx, mine)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			after = keys[len(keys)-1]
		}
		last := after
		err = p.save(ctx, d, func(pos *position) {
			if pos.Lists == nil {
				pos.Lists = map[int]string{}
			}
			if pos.Done == nil {
				pos.Done = map[int]bool{}
			}
			if !more {
				pos.Done[i] = true
				delete(pos.Lists, i)
				return
			}
			pos.Lists[i] = last
		})
		if err != nil || !more {
			return err
		}
	}
}

// listOnePage reads the keys of range rg after after: from the inventory
// when there is one, else with ListObjectsV2 (StartAfter, so that a page
// resumes from a key rather than a continuation token).
func (p *pass) listOnePage(ctx context.Context, rg listRange, after string) ([]string, bool, error) {
	if p.o.Inventory != nil {
		objs, err := p.store.InventoryObjectPage(ctx, *p.o.Inventory, rg.list, after, listPage)
		if err != nil {
			return nil, false, err
		}
		keys := make([]string, len(objs))
		for i, o := range objs {
			keys[i] = o.Key
		}
		return keys, len(objs) == listPage, nil
	}
	pg, err := p.objects.ListOnePage(ctx, rg.list, after, "", listPage)
	if err != nil {
		return nil, false, err
	}
	keys := make([]string, len(pg.Objects))
	for i, o := range pg.Objects {
		keys[i] = o.Key
	}
	return keys, pg.Next != "", nil
}

// accountFor checks one page of legacy objects. Each must be accounted for:
// moved (in the ledger), referenced by a row that still uses the flat layout,
// or an animation or metadata object of such a row's job. An animation or
// metadata object of a migrated photo's job that was never moved (written
// under the old layout after the swap) is a problem, and its photo can be
// re-enqueued. Anything else is an orphan: reported, never a failure, never
// deleted. The rows are looked up by the page's jobs (the application's job
// indexes, docs/guarantees.md): nothing is held beyond the page.
func (p *pass) accountFor(ctx context.Context, keys []string) (*Report, error) {
	d := p.page()
	atomic.AddInt64(&d.ListedObjects, int64(len(keys)))
	if len(keys) == 0 {
		return d, nil
	}
	moved, err := p.store.ObjectMoveOldKeysMoved(ctx, keys)
	if err != nil {
		return nil, err
	}
	type cand struct {
		key string
		l   keylayout.Legacy
		ok  bool
	}
	var rest []cand
	var jobs []string
	for _, k := range keys {
		if moved[k] {
			continue
		}
		l, err := keylayout.ParseLegacy(k)
		rest = append(rest, cand{k, l, err == nil})
		if err == nil {
			jobs = append(jobs, l.JobID)
		}
	}
	if len(rest) == 0 {
		return d, nil
	}
	using, err := p.store.PhotoListUsingJobs(ctx, jobs)
	if err != nil {
		return nil, err
	}
	migrated, err := p.store.PhotoMoveMigratedJobs(ctx, jobs)
	if err != nil {
		return nil, err
	}
	for _, c := range rest {
		derived := c.ok && (c.l.Kind == keylayout.KindAnimation || c.l.Kind == keylayout.KindMetadata)
		switch {
		case c.ok && referenced(using[c.l.JobID], c.key):
			continue
		case derived && len(using[c.l.JobID]) > 0:
			continue // belongs to a photo not migrated (archived, failed, pending)
		}
		if photo, ok := migrated[c.l.JobID]; derived && ok {
			d.add(Problem{Kind: UnmovedLegacyObject, PhotoID: photo, Key: c.key, Detail: "a legacy object of a migrated photo that was never moved (verify --requeue enqueues the photo)"})
			d.requeue(photo)
			continue
		}
		d.orphan(c.key)
	}
	return d, nil
}

// referenced reports whether one of rows references key in a legacy column.
func referenced(rows []ledger.Photo, key string) bool {
	for _, r := range rows {
		if !keylayout.IsUserScoped(key) && r.References(key) {
			return true
		}
	}
	return false
}
