package plan

import (
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// A plan splits across processes: Options.Shard of Options.Shards analyses a
// contiguous slice of the plan's ranges of job ids (ranges.go), and Merge
// adds the shards' partial reports up into the report one process makes.
//
// Every shard derives the same ranges without talking to the others: the
// bounds are cut from a sample of the photos table that is repeatable (the
// same blocks for the same table, ledger.Store.PlanJobSample), and shard i
// takes ranges [i·R/n, (i+1)·R/n) of the R ranges: contiguous, so that its
// slice of the job ids is one key range under each legacy prefix, and within
// one range of each other in size, so that the shards take about as long.
// Each partial report names its slice; Merge refuses slices that do not
// tile the job ids (a table that changed between the shards' samples).
//
// What cannot be cut by job, the classification of every legacy row (a
// row's counts and examples, in Go), is cut by the hash of the photo id:
// every shard still reads every legacy row once (a row the job indexes miss
// may hold a key of any range), but counts only its own.

// ErrNotAShard is a report Merge was given that is not a shard's partial
// report; ErrShardMissing a shard none of the reports is.
var (
	ErrNotAShard    = errors.New("not a shard's partial report")
	ErrShardMissing = errors.New("missing shard")
	// ErrShardsCutDifferently: the shards' slices of the job ids leave a
	// gap or overlap.
	ErrShardsCutDifferently = errors.New("the shards cut the job ids differently")
)

// Partial is what a shard's report carries for Merge.
type Partial struct {
	Shard  int `json:"shard"`
	Shards int `json:"shards"`
	// FirstRange and EndRange are the ranges [FirstRange, EndRange) of the
	// plan's TotalRanges this shard analysed: the job ids [Lo, Hi) ("" at
	// an end: no bound), cut at Bounds inside.
	FirstRange  int      `json:"first_range"`
	EndRange    int      `json:"end_range"`
	TotalRanges int      `json:"total_ranges"`
	Lo          string   `json:"lo"`
	Hi          string   `json:"hi"`
	Bounds      []string `json:"bounds"`
	// Cut are the bounds of all the plan's ranges, for a shard run again
	// to cut the same (Options.RangeBounds).
	Cut []string `json:"cut"`
	// Options are the options every shard must share.
	Options ShardOptions `json:"options"`
	// Findings are the joins' results over the slice, before they are
	// folded into the report (Merge folds the sum of them).
	Findings *ledger.PlanFindings `json:"findings"`
}

// ShardOptions are the options that change a plan's figures: every shard of
// a plan must have been run with the same (ListConcurrency, which changes
// nothing but the speed, may differ by machine).
type ShardOptions struct {
	PageSize           int32   `json:"page_size"`
	Top                int     `json:"top"`
	Examples           int     `json:"examples"`
	MultipartThreshold int64   `json:"multipart_threshold"`
	PartSize           int64   `json:"part_size"`
	NoSourceRecheck    bool    `json:"no_recheck_sources"`
	DestinationHead    bool    `json:"destination_head"`
	NoCopyFirst        bool    `json:"no_copy_first"`
	Workers            int     `json:"workers"`
	Concurrency        int     `json:"concurrency"`
	S3WriteRate        float64 `json:"s3_write_rate"`
	GraceDays          float64 `json:"grace_days"`
	Prices             Prices  `json:"prices"`
	Calibrate          int     `json:"calibrate"`
	CalibrateRun       string  `json:"calibrate_run"`
	ScratchPrefix      string  `json:"scratch_prefix"`
	RangeObjects       int     `json:"range_objects"`
	// Inventory is the loaded report's location and date ("": a listing).
	Inventory          string    `json:"inventory"`
	InventoryCreatedAt time.Time `json:"inventory_created_at"`
}

func shardOptions(o Options) ShardOptions {
	s := ShardOptions{PageSize: o.PageSize, Top: o.Top, Examples: o.Examples, MultipartThreshold: o.MultipartThreshold,
		PartSize: o.PartSize, NoSourceRecheck: o.NoSourceRecheck, DestinationHead: o.DestinationHead, NoCopyFirst: o.NoCopyFirst,
		Workers: o.Workers, Concurrency: o.Concurrency, S3WriteRate: o.S3WriteRate, GraceDays: o.GraceDays, Prices: o.Prices,
		Calibrate: o.Calibrate, CalibrateRun: o.CalibrateRun, ScratchPrefix: o.ScratchPrefix, RangeObjects: o.RangeObjects}
	if o.Inventory != nil {
		s.Inventory, s.InventoryCreatedAt = o.Inventory.Location, o.Inventory.CreatedAt.UTC()
	}
	return s
}

func (s ShardOptions) options() Options {
	o := Options{PageSize: s.PageSize, Top: s.Top, Examples: s.Examples, MultipartThreshold: s.MultipartThreshold,
		PartSize: s.PartSize, NoSourceRecheck: s.NoSourceRecheck, DestinationHead: s.DestinationHead, NoCopyFirst: s.NoCopyFirst,
		Workers: s.Workers, Concurrency: s.Concurrency, S3WriteRate: s.S3WriteRate, GraceDays: s.GraceDays, Prices: s.Prices,
		Calibrate: s.Calibrate, CalibrateRun: s.CalibrateRun, ScratchPrefix: s.ScratchPrefix, RangeObjects: s.RangeObjects}
	o.defaults()
	return o
}

// checkShard refuses a shard that is not i of n with 0 <= i < n, or a
// sharded plan that would not be split into ranges.
func checkShard(o Options) error {
	if o.Shards == 0 && o.Shard == 0 {
		return nil
	}
	if o.Shards < 1 || o.Shard < 0 || o.Shard >= o.Shards {
		return fmt.Errorf("plan shard %d/%d: give i/n with 0 <= i < n", o.Shard, o.Shards)
	}
	if o.RangeObjects < 0 {
		return fmt.Errorf("plan shard %d/%d: a plan of the whole bucket at once (negative range objects) cannot be split across processes: give a positive range size", o.Shard, o.Shards)
	}
	return nil
}

// shardRanges returns the ranges [first, end) of total that shard i of n
// analyses.
func shardRanges(total, i, n int) (first, end int) {
	return i * total / n, (i + 1) * total / n
}

// rowShard is the shard that counts a legacy row.
func rowShard(photoID string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(photoID))
	return int(h.Sum32() % uint32(n))
}

// partial records what the shard analysed, for Merge.
func (r *Report) partial(o Options, bounds []string, first, end int, f *ledger.PlanFindings) {
	p := &Partial{Shard: o.Shard, Shards: o.Shards, FirstRange: first, EndRange: end, TotalRanges: len(bounds) + 1,
		Bounds: []string{}, Cut: append([]string{}, bounds...), Options: shardOptions(o), Findings: cloneFindings(f)}
	if first > 0 {
		p.Lo = bounds[first-1]
	}
	switch {
	case first == end:
		p.Hi = p.Lo // an empty slice: more shards than ranges
	case end <= len(bounds):
		p.Hi = bounds[end-1]
	}
	if first < end {
		p.Bounds = slices.Clone(bounds[first : end-1])
	}
	r.Partial = p
}

func cloneFindings(f *ledger.PlanFindings) *ledger.PlanFindings {
	c := *f
	c.Copies = map[string]ledger.KindTotals{}
	for k, v := range f.Copies {
		c.Copies[k] = v
	}
	for _, ex := range []*[]ledger.KeyExample{&c.MissingExamples, &c.SharedKeyExamples, &c.ArchiveClassExamples, &c.OrphanExamples} {
		*ex = slices.Clone(*ex)
	}
	return &c
}

// Merge adds up the partial reports of every shard of one plan (names are
// where they came from, for the errors) into the report one process makes of
// the whole bucket, the estimate computed from the sums. It refuses a report
// that is not a shard's, a missing or duplicate shard, shards of different
// counts, buckets or options, and slices that do not tile the job ids.
func Merge(names []string, parts []*Report) (*Report, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("plan merge: %w: none given", ErrNotAShard)
	}
	for k, p := range parts {
		if p.Partial == nil {
			return nil, fmt.Errorf("plan merge: %s: %w (a plan of the whole bucket)", names[k], ErrNotAShard)
		}
	}
	p0 := parts[0].Partial
	n := p0.Shards
	byShard := make([]int, n)
	for i := range byShard {
		byShard[i] = -1
	}
	for k, p := range parts {
		s := p.Partial
		if s.Shards != n {
			return nil, fmt.Errorf("plan merge: mismatched shard counts: %s is shard %d/%d, %s is shard %d/%d: give the reports of one plan, every shard run with the same n", names[0], p0.Shard, n, names[k], s.Shard, s.Shards)
		}
		if s.Shard < 0 || s.Shard >= n {
			return nil, fmt.Errorf("plan merge: %s claims shard %d/%d, not one of 0/%d to %d/%d", names[k], s.Shard, n, n, n-1, n)
		}
		if j := byShard[s.Shard]; j >= 0 {
			return nil, fmt.Errorf("plan merge: duplicate shard %d/%d: %s and %s: give each shard's report once", s.Shard, n, names[j], names[k])
		}
		byShard[s.Shard] = k
		if p.Bucket != parts[0].Bucket {
			return nil, fmt.Errorf("plan merge: mismatched buckets: %s planned %q, %s planned %q: give the reports of one plan", names[0], parts[0].Bucket, names[k], p.Bucket)
		}
	}
	var missing []string
	for i, k := range byShard {
		if k < 0 {
			missing = append(missing, fmt.Sprintf("%d/%d", i, n))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("plan merge: %w %s: the merge needs the report of every shard 0/%d to %d/%d", ErrShardMissing, strings.Join(missing, ", "), n, n-1, n)
	}
	ordered := make([]*Report, n)
	on := make([]string, n)
	for i, k := range byShard {
		ordered[i], on[i] = parts[k], names[k]
	}
	for i := 1; i < n; i++ {
		if d := optionDiff(ordered[0].Partial.Options, ordered[i].Partial.Options); d != "" {
			return nil, fmt.Errorf("plan merge: mismatched options: %s (shard 0/%d) and %s (shard %d/%d) differ in %s: run every shard with the same options (only the listing concurrency may differ) and merge again", on[0], n, on[i], i, n, d)
		}
	}
	if err := checkTiling(on, ordered); err != nil {
		return nil, err
	}
	return merge(ordered), nil
}

// optionDiff names the options a and b differ in, with both values.
func optionDiff(a, b ShardOptions) string {
	var out []string
	var walk func(prefix string, x, y reflect.Value)
	walk = func(prefix string, x, y reflect.Value) {
		for i := 0; i < x.NumField(); i++ {
			f := x.Type().Field(i)
			name := prefix + strings.Split(f.Tag.Get("json"), ",")[0]
			xv, yv := x.Field(i), y.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
				walk(name+".", xv, yv)
				continue
			}
			if !reflect.DeepEqual(xv.Interface(), yv.Interface()) {
				out = append(out, fmt.Sprintf("%s (%v against %v)", name, xv.Interface(), yv.Interface()))
			}
		}
	}
	walk("", reflect.ValueOf(a), reflect.ValueOf(b))
	return strings.Join(out, ", ")
}

// checkTiling refuses shards whose slices of the job ids leave a gap or
// overlap: shards that cut the ranges differently.
func checkTiling(names []string, parts []*Report) error {
	total := parts[0].Partial.TotalRanges
	pos, lo, prev := 0, "", -1
	for i, r := range parts {
		s := r.Partial
		if s.TotalRanges != total || s.FirstRange != pos || s.EndRange < s.FirstRange || s.EndRange > total ||
			(s.FirstRange < s.EndRange && s.Lo != lo) {
			what := fmt.Sprintf("%s (shard %d/%d) covers ranges [%d, %d) of %d, job ids [%q, %q)", names[i], i, s.Shards, s.FirstRange, s.EndRange, s.TotalRanges, s.Lo, s.Hi)
			after := "the first shard"
			if prev >= 0 {
				p := parts[prev].Partial
				after = fmt.Sprintf("%s (shard %d/%d) ends at range %d of %d, job id %q", names[prev], prev, p.Shards, p.EndRange, p.TotalRanges, p.Hi)
			}
			return fmt.Errorf("plan merge: %w: %s, after %s (the photos table changed between the shards' starts, or the reports are of different plans)", ErrShardsCutDifferently, what, after)
		}
		if s.FirstRange < s.EndRange {
			lo, prev = s.Hi, i
		}
		pos = s.EndRange
	}
	if pos != total {
		return fmt.Errorf("plan merge: %w: the shards cover %d of the %d ranges", ErrShardsCutDifferently, pos, total)
	}
	return nil
}

// merge adds up partial reports ordered by shard.
func merge(parts []*Report) *Report {
	p0 := parts[0]
	o := p0.Partial.Options.options()
	r := newReport(p0.Bucket, o)
	r.At = p0.At
	total := &ledger.PlanFindings{Copies: map[string]ledger.KindTotals{}}
	byKey := func(x, y ledger.KeyExample) int { return strings.Compare(x.Key, y.Key) }
	byPhoto := func(x, y ledger.KeyExample) int { return strings.Compare(x.PhotoID, y.PhotoID) }
	r.Ranges = 0
	for _, p := range parts {
		if p.At.Before(r.At) {
			r.At = p.At
		}
		r.Seconds = max(r.Seconds, p.Seconds)
		for k, v := range p.Phases {
			r.Phases[k] += v
		}
		l := &r.Listing
		for k, v := range p.Listing.Prefixes {
			l.Prefixes[k] = Totals{Objects: l.Prefixes[k].Objects + v.Objects, Bytes: l.Prefixes[k].Bytes + v.Bytes}
		}
		for k, v := range p.Listing.ByStorageClass {
			l.ByStorageClass[k] = Totals{Objects: l.ByStorageClass[k].Objects + v.Objects, Bytes: l.ByStorageClass[k].Bytes + v.Bytes}
		}
		l.Objects += p.Listing.Objects
		l.Bytes += p.Listing.Bytes
		l.Requests += p.Listing.Requests
		l.Shards += p.Listing.Shards
		l.InventoryPages += p.Listing.InventoryPages
		r.Photos.LegacyRows += p.Photos.LegacyRows
		r.Photos.ToMigrate += p.Photos.ToMigrate
		r.Photos.Ownerless += p.Photos.Ownerless
		r.Photos.Archived += p.Photos.Archived
		r.Photos.InvalidID += p.Photos.InvalidID
		r.Photos.UnrecognisedKeys += p.Photos.UnrecognisedKeys
		// The problems found in Go: the listing's (first keys in byte
		// order) and the rows' (first photos in id order, the order the
		// rows are read in).
		for _, g := range []struct {
			name  string
			order func(x, y ledger.KeyExample) int
		}{{probUnrecognisedObject, byKey}, {probUnrecognisedRows, byPhoto}, {probInvalidIDs, byPhoto}} {
			dst, src := r.problems[g.name], p.Problem(g.name)
			dst.Count += src.Count
			dst.Examples = firstExamples(dst.Examples, src.Examples, o.Examples, g.order)
		}
		for _, ob := range p.Largest {
			ob.Multipart = false
			r.top.offer(ob)
		}
		mergeFindings(total, p.Partial.Findings, o.Examples)
		r.Ranges += p.Partial.EndRange - p.Partial.FirstRange
	}
	if inv := p0.Listing.Inventory; inv != nil {
		c := *inv
		c.AgeSeconds = r.At.Sub(c.CreatedAt).Seconds()
		r.Listing.Inventory = &c
	}
	source := PhaseListing
	if r.Listing.Inventory != nil {
		source = PhaseInventory
	}
	r.Listing.Seconds = r.Phases[string(source)]
	r.largest(o)
	r.findings(total)
	// The latency comes from the ledger (the same for every shard), or from
	// scratch copies of each shard's own sample: the first shard's that has
	// one is kept (a shard with no range, or no readable photo, has none).
	cal := p0.Estimate.Calibration
	for _, p := range parts {
		if c := p.Estimate.Calibration; c.Source != NotCalibrated {
			cal = c
			break
		}
	}
	r.estimate(o, cal)
	return r
}
