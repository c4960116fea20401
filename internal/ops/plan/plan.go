// Package plan is the pre-flight report: before anything is enqueued, it
// lists the legacy prefixes, joins the listing with the photos rows, and says
// what the migration will move, what will go wrong, what it will cost and how
// long it will take.
//
// It is read-only (a calibration copies to a scratch prefix and deletes what
// it wrote) and bounded in memory whatever the bucket's size: the listing is
// sharded by key range and streamed page by page into a temporary table of
// one Postgres session (COPY), the photos rows are streamed the same way, and
// the joins (missing objects, shared objects, orphans, what each photo will
// copy) run in Postgres. A large bucket is analysed one range of job ids at a
// time (ranges.go): the session then holds and joins about
// Options.RangeObjects objects at once, whatever the bucket's size. The planner itself keeps
// counters, a top-K heap of the largest objects and a few examples per
// problem. The listing is the cost: ListObjectsV2 only, no HEAD per object.
// With a loaded S3 Inventory report (Options.Inventory) the same key ranges
// are read from the report in Postgres instead, with no request to S3: a plan
// as of the report's date.
package plan

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Prices are S3 and SQS request and storage prices, in dollars.
type Prices struct {
	// PutPer1000 is the price of 1,000 PUT, COPY, POST or LIST requests.
	PutPer1000 float64 `json:"put_copy_post_list_per_1000"`
	// GetPer1000 is the price of 1,000 GET or HEAD requests (and all others).
	GetPer1000 float64 `json:"get_head_per_1000"`
	// StorageGBMonth is the price of storing one GiB for a month.
	StorageGBMonth float64 `json:"storage_per_gb_month"`
	// SQSPerMillion is the price of a million SQS requests (each 64 KiB
	// chunk of a request is one request).
	SQSPerMillion float64 `json:"sqs_per_million"`
}

// DefaultPrices are the published us-east-1 prices as of 2026 (S3 Standard,
// SQS standard queues). Check them against the current price list.
func DefaultPrices() Prices {
	return Prices{PutPer1000: 0.005, GetPer1000: 0.0004, StorageGBMonth: 0.023, SQSPerMillion: 0.40}
}

// Options tune a plan.
type Options struct {
	// ListConcurrency bounds the listing requests in flight (default 32);
	// PageSize is the objects per listing page (default and S3 maximum 1000).
	ListConcurrency int
	PageSize        int32
	// Top is how many of the largest objects are listed; Examples how many
	// examples each problem shows.
	Top      int
	Examples int
	// MultipartThreshold and PartSize are the workers' (objects above the
	// threshold are copied part by part).
	MultipartThreshold int64
	PartSize           int64
	// NoSourceRecheck and DestinationHead mirror the workers' settings that
	// change the number of HEAD requests per object (--recheck-sources=false,
	// --destination-check head).
	NoSourceRecheck bool
	DestinationHead bool
	// NoCopyFirst mirrors the workers' --copy-first=false, and a fleet that
	// cannot copy first (a bucket with per-object ACLs, a server that may
	// drop headers on a copy): every source is read before its copy. A
	// MultipartThreshold below CopyObject's 5 GiB is counted the same way:
	// the workers then never copy first (objstore.Store.CopiesUnread).
	NoCopyFirst bool
	// Workers and Concurrency are the fleet the duration is estimated for.
	Workers     int
	Concurrency int
	// S3WriteRate is the writes per second S3 sustains on a prefix before it
	// partitions it further (3,500).
	S3WriteRate float64
	// GraceDays is how long both copies are kept before cleanup.
	GraceDays float64
	Prices    Prices
	// Calibrate, if positive, copies that many photos' objects to a scratch
	// prefix and measures the per-photo latency (instead of the ledger's).
	// CalibrateRun picks the ledger run to read latencies from.
	Calibrate    int
	CalibrateRun string
	// ScratchPrefix is where a calibration copies; it must be outside users/
	// and the legacy prefixes.
	ScratchPrefix string
	// Progress, if set, is called a few times a second while the plan runs.
	Progress func(Progress)
	// Inventory, if set, is the loaded S3 Inventory report of the bucket
	// (ledger.Store.InventoryLatest; internal/ops/inventory loads one): the
	// legacy objects are read from it, page by page in the same key ranges,
	// instead of listed. The plan then sends no ListObjectsV2 (a calibration
	// aside), and is an estimate as of the report's date.
	Inventory *ledger.InventoryReport
	// RangeObjects is about how many legacy objects the database holds and
	// joins at a time (default 100,000; negative: the whole bucket at once):
	// the plan is split into ranges of job ids, analysed one after the
	// other. RangeBounds, if set, are the ranges' bounds instead (letters and
	// digits, increasing; tests).
	RangeObjects int
	RangeBounds  []string
	// Shard of Shards (Shards 0: not sharded) analyses only its slice of
	// the ranges and makes a partial report (Report.Partial) for Merge
	// (shard.go).
	Shard, Shards int
}

func (o *Options) defaults() {
	if o.ListConcurrency <= 0 {
		o.ListConcurrency = 32
	}
	if o.PageSize <= 0 || o.PageSize > 1000 {
		o.PageSize = 1000
	}
	if o.Top <= 0 {
		o.Top = 10
	}
	if o.Examples <= 0 {
		o.Examples = 5
	}
	d := objstore.DefaultOptions()
	if o.MultipartThreshold <= 0 {
		o.MultipartThreshold = d.MultipartThreshold
	}
	if o.PartSize <= 0 {
		o.PartSize = d.PartSize
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.S3WriteRate <= 0 {
		o.S3WriteRate = 3500
	}
	if o.Prices == (Prices{}) {
		o.Prices = DefaultPrices()
	}
	if o.RangeObjects == 0 {
		o.RangeObjects = 100000
	}
	if o.ScratchPrefix == "" {
		o.ScratchPrefix = "keymigrate-plan-scratch/"
	}
}

// Phase is a step of making a plan, in the order Run takes them.
type Phase string

// The phases of a plan (Report.Phases times each by name).
const (
	PhaseListing     Phase = "listing"     // listing the bucket's legacy prefixes
	PhaseInventory   Phase = "inventory"   // or reading them from a loaded S3 Inventory
	PhaseRows        Phase = "rows"        // reading the legacy rows
	PhaseJoining     Phase = "joining"     // joining the two in Postgres
	PhaseCalibrating Phase = "calibrating" // measuring the latency per photo
)

// Progress is where a running plan is.
type Progress struct {
	Phase   Phase
	Objects int64 // objects listed (or read from the inventory) so far
	Pages   int64 // listing requests (or inventory pages) so far
	Rows    int64 // legacy rows read so far
}

// ArchiveClasses are the storage classes whose objects must be restored
// before they can be copied (GLACIER_IR is instant and copies like STANDARD;
// INTELLIGENT_TIERING's archive tiers are not visible in a listing).
var ArchiveClasses = []string{"GLACIER", "DEEP_ARCHIVE"}

// Run makes the plan.
func Run(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options) (*Report, error) {
	o.defaults()
	if err := checkScratch(o.ScratchPrefix); err != nil {
		return nil, err
	}
	if err := checkShard(o); err != nil {
		return nil, err
	}
	start := time.Now()
	r := newReport(objects.Bucket(), o)
	bounds, err := r.rangeBounds(ctx, st, o)
	if err != nil {
		return nil, err
	}
	if o.Shards > 0 && r.RangesNote != "" {
		why := strings.TrimPrefix(r.RangesNote, "the whole bucket at once (its temporary files grow with the bucket): ")
		return nil, fmt.Errorf("plan shard %d/%d: a plan splits across processes by ranges of job ids, and this database cannot answer them: %s; fix that (docs/guarantees.md), or plan in one process", o.Shard, o.Shards, why)
	}
	ps, err := st.PlanSessionOpen(ctx)
	if err != nil {
		return nil, err
	}
	defer ps.Close()

	pr := &planRun{r: r, st: st, ps: ps, o: o, page: listing(objects, o.PageSize), source: PhaseListing}
	stopTicker := pr.prog.tick(o.Progress)
	defer stopTicker()
	if inv := o.Inventory; inv != nil {
		pr.page, pr.source = fromInventory(st, *inv, inventoryPage), PhaseInventory
		r.Listing.Inventory = &InventorySource{Location: inv.Location, CreatedAt: inv.CreatedAt, AgeSeconds: r.At.Sub(inv.CreatedAt).Seconds(), Objects: inv.Rows}
	}
	var f *ledger.PlanFindings
	var sample sampler
	first, end := 0, len(bounds)+1
	switch {
	case o.Shards > 0:
		first, end = shardRanges(len(bounds)+1, o.Shard, o.Shards)
		f, sample, err = pr.split(ctx, bounds, first, end)
	case len(bounds) == 0:
		f, sample, err = pr.whole(ctx)
	default:
		f, sample, err = pr.split(ctx, bounds, first, end)
	}
	if err != nil {
		return nil, err
	}
	if o.Shards > 0 {
		r.Ranges = end - first
		r.partial(o, bounds, first, end, f)
	}
	r.Listing.Seconds = r.Phases[string(pr.source)]
	r.largest(o)
	r.findings(f)
	var cal Calibration
	err = pr.phase(PhaseCalibrating, func() error {
		var err error
		cal, err = calibration(ctx, st, sample, objects, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.estimate(o, cal)
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

// planRun is one plan being made.
type planRun struct {
	r      *Report
	st     *ledger.Store
	ps     *ledger.PlanSession
	o      Options
	page   pager
	source Phase
	prog   progress
}

// phase runs fn as (part of) the named phase, adding up its time.
func (pr *planRun) phase(name Phase, fn func() error) error {
	pr.prog.phase.Store(name)
	t := time.Now()
	err := fn()
	pr.r.Phases[string(name)] += time.Since(t).Seconds()
	return err
}

func (pr *planRun) query() ledger.PlanQuery {
	return ledger.PlanQuery{MultipartThreshold: pr.o.MultipartThreshold, PartSize: pr.o.PartSize, ArchiveClasses: ArchiveClasses, Examples: pr.o.Examples}
}

// whole analyses the bucket in one range: the whole listing and every legacy
// row in the session at once.
func (pr *planRun) whole(ctx context.Context) (*ledger.PlanFindings, sampler, error) {
	r, ps := pr.r, pr.ps
	if err := pr.phase(pr.source, func() error { return r.list(ctx, ps, pr.page, shards(keylayout.LegacyPrefixes), pr.o, &pr.prog) }); err != nil {
		return nil, nil, err
	}
	if err := pr.phase(PhaseRows, func() error { return r.rows(ctx, ps, pr.st, pr.o, &pr.prog, false) }); err != nil {
		return nil, nil, err
	}
	var f *ledger.PlanFindings
	err := pr.phase(PhaseJoining, func() error {
		var err error
		f, err = ps.Analyze(ctx, pr.query())
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return f, func(ctx context.Context) ([]ledger.SamplePhoto, error) {
		return ps.SamplePhotos(ctx, pr.o.Calibrate, ArchiveClasses)
	}, nil
}

// checkScratch refuses a scratch prefix that could hold user or legacy data.
func checkScratch(prefix string) error {
	bad := strings.HasPrefix(prefix, keylayout.UserPrefixRoot) || !strings.HasSuffix(prefix, "/") || keylayout.CheckKeyShape(strings.TrimSuffix(prefix, "/")) != nil
	for _, p := range keylayout.LegacyPrefixes {
		bad = bad || strings.HasPrefix(prefix, p) || strings.HasPrefix(p, prefix)
	}
	if bad {
		return fmt.Errorf("scratch prefix %q: give a prefix ending in / outside users/ and the legacy prefixes (%s)", prefix, strings.Join(keylayout.LegacyPrefixes, ", "))
	}
	return nil
}

// progress is shared by the phases and read by a ticker.
type progress struct {
	phase   atomic.Value
	objects atomic.Int64
	pages   atomic.Int64
	rows    atomic.Int64
}

func (p *progress) snapshot() Progress {
	ph, _ := p.phase.Load().(Phase)
	return Progress{Phase: ph, Objects: p.objects.Load(), Pages: p.pages.Load(), Rows: p.rows.Load()}
}

func (p *progress) tick(fn func(Progress)) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fn(p.snapshot())
				return
			case <-t.C:
				fn(p.snapshot())
			}
		}
	}()
	return func() { close(done); <-finished }
}

func newPlanID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// rows classifies every legacy photos row (the counts and examples of the
// rows' problems) and streams their key columns into the session: all of
// them, or with split only those of the rows a range's index scans do not
// find (ledger.PlanIndexed), into plan_odd.
func (r *Report) rows(ctx context.Context, ps *ledger.PlanSession, st *ledger.Store, o Options, prog *progress, split bool) error {
	ch := make(chan []ledger.PlanRef, 4)
	odd := make(chan []ledger.PlanOddRef, 4)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		if split {
			_, err = ps.CopyOddRefs(gctx, odd)
		} else {
			_, err = ps.CopyRefs(gctx, ch)
		}
		return err
	})
	g.Go(func() error {
		defer close(ch)
		defer close(odd)
		after := ""
		for {
			page, err := st.PhotoScanLegacyRows(gctx, after, 2000)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				return nil
			}
			refs := make([]ledger.PlanRef, 0, 3*len(page))
			var odds []ledger.PlanOddRef
			for _, p := range page {
				// A shard counts only its own rows (by the hash of
				// their id), and needs every row's keys all the same.
				var rr []ledger.PlanRef
				if o.Shards == 0 || rowShard(p.ID, o.Shards) == o.Shard {
					rr = r.classify(p, o)
				} else {
					rr, _, _ = classifyRow(p)
				}
				switch {
				case !split:
					refs = append(refs, rr...)
				case !ledger.PlanIndexed(p):
					for _, ref := range rr {
						odds = append(odds, ledger.PlanOddRef{PlanRef: ref, Pos: keyPos(ref.Key)})
					}
				}
			}
			prog.rows.Add(int64(len(page)))
			if split {
				err = send(gctx, odd, odds)
			} else {
				err = send(gctx, ch, refs)
			}
			if err != nil {
				return err
			}
			after = page[len(page)-1].ID
		}
	})
	return g.Wait()
}

// send sends b on ch unless ctx ends first.
func send[T any](ctx context.Context, ch chan<- []T, b []T) error {
	select {
	case ch <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// classify decides what a worker would do with a row (the same checks, in
// the same order, as the worker's plan) and returns its legacy key columns.
func (r *Report) classify(p ledger.Photo, o Options) []ledger.PlanRef {
	r.Photos.LegacyRows++
	refs, class, detail := classifyRow(p)
	switch class {
	case ledger.PlanArchived:
		r.Photos.Archived++
	case ledger.PlanOwnerless:
		r.Photos.Ownerless++
	case ledger.PlanInvalidID:
		r.Photos.InvalidID++
		r.example(probInvalidIDs, ledger.KeyExample{PhotoID: p.ID, Key: p.Original, Detail: detail}, o)
	case ledger.PlanUnrecognised:
		r.Photos.UnrecognisedKeys++
		r.example(probUnrecognisedRows, ledger.KeyExample{PhotoID: p.ID, Key: p.Original, Detail: detail}, o)
	default:
		r.Photos.ToMigrate++
	}
	return refs
}

// classifyRow returns a row's legacy key columns, its class and, for a dead
// letter, why.
func classifyRow(p ledger.Photo) (refs []ledger.PlanRef, class, detail string) {
	type column struct {
		name string
		key  *string
		want keylayout.Kind
	}
	cols := []column{{"original_key", &p.Original, keylayout.KindOriginal}, {"processed_key", p.Processed, keylayout.KindRestored}, {"thumbnail_key", p.Thumbnail, keylayout.KindThumbnail}}
	job, problem := "", ""
	for _, c := range cols {
		if c.key == nil || keylayout.IsUserScoped(*c.key) {
			continue
		}
		l, err := keylayout.ParseLegacy(*c.key)
		switch {
		case err != nil:
			problem = fmt.Sprintf("%s %q is not a key of the legacy layout", c.name, *c.key)
		case l.Kind != c.want:
			problem = fmt.Sprintf("%s holds a %s key %q", c.name, l.Kind, *c.key)
		case job != "" && job != l.JobID:
			problem = fmt.Sprintf("its keys name two jobs, %s and %s", job, l.JobID)
		case job == "":
			job = l.JobID
		}
		refs = append(refs, ledger.PlanRef{PhotoID: p.ID, Column: c.name, Key: *c.key})
	}
	class = ledger.PlanMigrate
	switch {
	case p.Status != nil && *p.Status == ledger.ArchivedStatus:
		class = ledger.PlanArchived
	case p.OwnerID == nil:
		class = ledger.PlanOwnerless
	case keylayout.ValidateID(*p.OwnerID) != nil || keylayout.ValidateID(p.ID) != nil:
		class = ledger.PlanInvalidID
		detail = fmt.Sprintf("owner %q is not a UUID or a positive integer", *p.OwnerID)
		if keylayout.ValidateID(p.ID) != nil {
			detail = fmt.Sprintf("photo id %q is not a UUID or a positive integer", p.ID)
		}
	case problem != "":
		class, detail = ledger.PlanUnrecognised, problem
	}
	for i := range refs {
		refs[i].Class, refs[i].Job = class, job
	}
	return refs, class, detail
}
