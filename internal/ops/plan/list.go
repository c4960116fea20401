package plan

import (
	"container/heap"
	"context"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// shard is one key range of a legacy prefix, listed on its own so that a
// prefix holding most of the bucket is still listed in parallel. Each legacy
// prefix p is cut into: one range per printable ASCII character c (keys
// starting with p+c: ids are alphanumeric, so these are where the objects
// are), the keys before p+" " (p itself and control characters) and the keys
// after every p+"~"… (non-ASCII). Together they cover every key under p
// exactly once.
type shard struct {
	prefix     string // the legacy prefix, for the totals
	list       string // the prefix listed
	startAfter string
	// stopAt ends the range at the first key >= stopAt (empty: no end);
	// skip drops keys with this prefix (listed by another shard), from the
	// keys before it (a split plan's range starts after startAfter, just
	// before from).
	stopAt string
	skip   string
	from   string
}

func shards(prefixes []string) []shard {
	var out []shard
	for _, p := range prefixes {
		out = append(out, shard{prefix: p, list: p, stopAt: p + " "})
		for c := byte(' '); c <= '~'; c++ {
			switch c {
			case '.':
				// MinIO refuses a prefix or start-after ending in a "."
				// path component: p+"." and p+"/" are one range, from
				// after p+"-" (skipped: the '-' range has them) to p+"0".
				out = append(out, shard{prefix: p, list: p, startAfter: p + "-", skip: p + "-", stopAt: p + "0"})
			case '/':
			default:
				out = append(out, shard{prefix: p, list: p + string(c)})
			}
		}
		out = append(out, shard{prefix: p, list: p, startAfter: p + "~", skip: p + "~"})
	}
	return out
}

// aggregate is what one shard found; shards merge theirs into the report.
type aggregate struct {
	prefix       Totals
	byClass      map[string]Totals
	unrecognised []ledger.KeyExample
	unrecCount   int64
	top          topK
	pages        int64 // LIST requests, or pages read from an inventory
}

// pager reads one page of a shard's key range, in key order, from the token
// ("" for the first page); next is "" after the last page.
type pager func(ctx context.Context, sh shard, token string) (objs []objstore.Listed, next string, err error)

// listing pages through the bucket with ListObjectsV2.
func listing(objects *objstore.Store, size int32) pager {
	return func(ctx context.Context, sh shard, token string) ([]objstore.Listed, string, error) {
		p, err := objects.ListOnePage(ctx, sh.list, sh.startAfter, token, size)
		return p.Objects, p.Next, err
	}
}

// inventoryPage is the objects per page read from a loaded inventory: larger
// than a listing's, since a page is one index range scan in Postgres.
const inventoryPage = 5000

// fromInventory pages through the loaded inventory report rep: the same key
// ranges in the same order as a listing, from the index of the report's
// objects, with no request to S3.
func fromInventory(st *ledger.Store, rep ledger.InventoryReport, size int) pager {
	return func(ctx context.Context, sh shard, token string) ([]objstore.Listed, string, error) {
		after := token
		if after == "" {
			after = sh.startAfter
		}
		objs, err := st.InventoryObjectPage(ctx, rep, sh.list, after, size)
		if err != nil {
			return nil, "", err
		}
		out := make([]objstore.Listed, len(objs))
		for i, o := range objs {
			out[i] = objstore.Listed{Key: o.Key, Size: o.Size, ETag: o.ETag, StorageClass: o.StorageClass}
		}
		next := ""
		if len(objs) == size {
			next = objs[len(objs)-1].Key
		}
		return out, next, nil
	}
}

// list streams every legacy object into the session, sharded and in parallel,
// and aggregates what a listing alone can tell. The objects come from page:
// the bucket's listing, or a loaded inventory.
func (r *Report) list(ctx context.Context, ps *ledger.PlanSession, page pager, all []shard, o Options, prog *progress) error {
	r.Listing.Shards += len(all)
	ch := make(chan []ledger.PlanObject, 2*o.ListConcurrency)
	var mu sync.Mutex
	top := &r.top
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := ps.CopyObjects(gctx, ch)
		return err
	})
	g.Go(func() error {
		defer close(ch)
		lg, lctx := errgroup.WithContext(gctx)
		lg.SetLimit(o.ListConcurrency)
		for _, sh := range all {
			lg.Go(func() error {
				a, err := listShard(lctx, page, sh, o, ch, prog)
				mu.Lock()
				defer mu.Unlock()
				r.merge(sh.prefix, a, top, o)
				return err
			})
		}
		return lg.Wait()
	})
	return g.Wait()
}

// largest sets the report's largest objects, once every range is listed.
func (r *Report) largest(o Options) {
	for r.top.Len() > 0 {
		ob := heap.Pop(&r.top).(Object)
		ob.Multipart = ob.Size > o.MultipartThreshold
		r.Largest = append([]Object{ob}, r.Largest...)
	}
}

func (r *Report) merge(prefix string, a *aggregate, top *topK, o Options) {
	t := r.Listing.Prefixes[prefix]
	t.Objects += a.prefix.Objects
	t.Bytes += a.prefix.Bytes
	r.Listing.Prefixes[prefix] = t
	r.Listing.Objects += a.prefix.Objects
	r.Listing.Bytes += a.prefix.Bytes
	if r.Listing.Inventory != nil {
		r.Listing.InventoryPages += a.pages
	} else {
		r.Listing.Requests += a.pages
	}
	for c, v := range a.byClass {
		t := r.Listing.ByStorageClass[c]
		t.Objects += v.Objects
		t.Bytes += v.Bytes
		r.Listing.ByStorageClass[c] = t
	}
	// The examples are the first keys in byte order, whichever shard ends
	// first: a plan shows the same examples every time (and from an
	// inventory as from a listing).
	p := r.problems[probUnrecognisedObject]
	p.Count += a.unrecCount
	p.Examples = append(p.Examples, a.unrecognised...)
	slices.SortFunc(p.Examples, func(x, y ledger.KeyExample) int { return strings.Compare(x.Key, y.Key) })
	p.Examples = p.Examples[:min(len(p.Examples), o.Examples)]
	for _, ob := range a.top.items {
		top.offer(ob)
	}
}

// listShard lists one key range page by page, sending each page to ch.
func listShard(ctx context.Context, page pager, sh shard, o Options, ch chan<- []ledger.PlanObject, prog *progress) (*aggregate, error) {
	a := &aggregate{byClass: map[string]Totals{}, top: topK{k: o.Top}}
	token := ""
	for {
		objs, next, err := page(ctx, sh, token)
		if err != nil {
			return a, err
		}
		a.pages++
		prog.pages.Add(1)
		batch := make([]ledger.PlanObject, 0, len(objs))
		done := next == ""
		for _, ob := range objs {
			if sh.stopAt != "" && ob.Key >= sh.stopAt {
				done = true
				break
			}
			if sh.skip != "" && strings.HasPrefix(ob.Key, sh.skip) || ob.Key < sh.from {
				continue
			}
			po := ledger.PlanObject{Key: ob.Key, Size: ob.Size, StorageClass: ob.StorageClass, Kind: "unrecognised"}
			if l, err := keylayout.ParseLegacy(ob.Key); err == nil {
				po.Kind, po.Job = string(l.Kind), l.JobID
			} else {
				a.unrecCount++
				if len(a.unrecognised) < o.Examples {
					a.unrecognised = append(a.unrecognised, ledger.KeyExample{Key: ob.Key, Size: ob.Size, Detail: "matches no pattern of the legacy layout"})
				}
			}
			batch = append(batch, po)
			a.prefix.Objects++
			a.prefix.Bytes += ob.Size
			c := a.byClass[ob.StorageClass]
			c.Objects++
			c.Bytes += ob.Size
			a.byClass[ob.StorageClass] = c
			a.top.offer(Object{Key: ob.Key, Size: ob.Size, StorageClass: ob.StorageClass})
		}
		prog.objects.Add(int64(len(batch)))
		if len(batch) > 0 {
			select {
			case ch <- batch:
			case <-ctx.Done():
				return a, ctx.Err()
			}
		}
		if done {
			return a, nil
		}
		token = next
	}
}

// topK keeps the k largest objects offered (a min-heap on size).
type topK struct {
	k     int
	items []Object
}

func (t *topK) Len() int           { return len(t.items) }
func (t *topK) Less(i, j int) bool { return smaller(t.items[i], t.items[j]) }
func (t *topK) Swap(i, j int)      { t.items[i], t.items[j] = t.items[j], t.items[i] }
func (t *topK) Push(x any)         { t.items = append(t.items, x.(Object)) }
func (t *topK) Pop() any {
	n := len(t.items)
	x := t.items[n-1]
	t.items = t.items[:n-1]
	return x
}

func (t *topK) offer(o Object) {
	if t.k <= 0 {
		return
	}
	if len(t.items) < t.k {
		heap.Push(t, o)
		return
	}
	if smaller(t.items[0], o) {
		t.items[0] = o
		heap.Fix(t, 0)
	}
}

// smaller orders objects by size, and objects of one size by key (the
// greater key is the smaller object), so that the k largest are the same
// whatever order they are offered in.
func smaller(a, b Object) bool {
	if a.Size != b.Size {
		return a.Size < b.Size
	}
	return a.Key > b.Key
}
