package plan

import (
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// A plan of a large bucket is split into ranges of legacy job ids, analysed
// one after the other in the same session (ledger.PlanSession.BeginRange):
// each range's objects are listed by key range under every legacy prefix,
// its rows are read by the photos table's job indexes, the two are joined,
// and the counts and examples are added to the plan's before the next range
// replaces them. Postgres holds and joins one range at a time, about
// Options.RangeObjects objects, whatever the bucket's size. The bounds are
// letters and digits only, which sort after the '.' and '/' that end a job
// id in every legacy key: every object of a job, under every prefix, falls in
// the range of its job id, so the joins by job stay within a range.

// sampleRows is about how many photos rows the bounds are drawn from, at
// least.
const sampleRows = 20000

// objectsPerRow over-estimates the legacy objects per photos row (3.4 in
// the scale bench's legacy state), to size the ranges from the table's size.
const objectsPerRow = 4

// rangeBounds returns the bounds of the plan's ranges, none to analyse the
// bucket at once (a small bucket, or a database whose job indexes cannot
// answer the ranges: Report.RangesNote says why).
func (r *Report) rangeBounds(ctx context.Context, st *ledger.Store, o Options) ([]string, error) {
	r.Ranges = 1
	if o.RangeBounds != nil {
		for i, b := range o.RangeBounds {
			if !alnum(b) || b == "" || i > 0 && b <= o.RangeBounds[i-1] {
				return nil, fmt.Errorf("plan range bounds %q: give increasing bounds of letters and digits", o.RangeBounds)
			}
		}
		r.Ranges = len(o.RangeBounds) + 1
		if o.Shards > 0 {
			// A shard given another shard's cut still needs the
			// listing's byte order.
			bytewise, err := st.PlanKeysBytewise(ctx)
			if err != nil {
				return nil, err
			}
			if !bytewise {
				r.RangesNote = "photos.original_key does not sort in byte order (a C collation), the order of the listing's ranges"
				return nil, nil
			}
		}
		return o.RangeBounds, nil
	}
	if o.RangeObjects < 0 {
		return nil, nil
	}
	missing, rows, err := st.PhotoMissingIndexes(ctx)
	if err != nil {
		return nil, err
	}
	est := rows * objectsPerRow
	if o.Inventory != nil {
		est = o.Inventory.Rows
	}
	n := int((est + int64(o.RangeObjects) - 1) / int64(o.RangeObjects))
	// A shard is a slice of the ranges even when there is only one range:
	// the checks below must hold for it.
	if n <= 1 && o.Shards == 0 {
		return nil, nil
	}
	if len(missing) > 0 {
		r.RangesNote = "the whole bucket at once (its temporary files grow with the bucket): the photos table lacks the job indexes of docs/guarantees.md, which find a range's rows"
		return nil, nil
	}
	bytewise, err := st.PlanKeysBytewise(ctx)
	if err != nil {
		return nil, err
	}
	if !bytewise {
		r.RangesNote = "the whole bucket at once (its temporary files grow with the bucket): photos.original_key does not sort in byte order (a C collation), the order of the listing's ranges"
		return nil, nil
	}
	// A few sampled jobs per range at least (10^9 rows: 40,000 ranges).
	want := max(sampleRows, 4*n)
	sample, err := st.PlanJobSample(ctx, min(100, 100*float64(want)/math.Max(1, float64(rows))))
	if err != nil {
		return nil, err
	}
	bounds := cutBounds(sample, n)
	r.Ranges = len(bounds) + 1
	return bounds, nil
}

// cutBounds returns up to n-1 bounds that cut the sampled jobs into n ranges
// of about equal size: the quantiles, each cut to its leading letters and
// digits.
func cutBounds(sample []string, n int) []string {
	slices.Sort(sample)
	var out []string
	for k := 1; k < n && len(sample) > 0; k++ {
		j := sample[k*len(sample)/n]
		end := 0
		for end < len(j) && alnum(j[end:end+1]) {
			end++
		}
		if b := j[:end]; b != "" && (len(out) == 0 || b > out[len(out)-1]) {
			out = append(out, b)
		}
	}
	return out
}

func alnum(s string) bool {
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// keyPos is the part of a key a range is compared with: after its legacy
// prefix (the whole key if it has none).
func keyPos(key string) string {
	for _, p := range keylayout.LegacyPrefixes {
		if strings.HasPrefix(key, p) {
			return key[len(p):]
		}
	}
	return key
}

// rangeOf returns the index of the range of pos (a key position or a job).
func rangeOf(bounds []string, pos string) int {
	return sort.Search(len(bounds), func(i int) bool { return bounds[i] > pos })
}

// rangeShards lists the range [lo, hi) under every legacy prefix: from the
// first key >= p+lo (listing after a string just before it) to the last
// key < p+hi.
func rangeShards(lo, hi string) []shard {
	var out []shard
	for _, p := range keylayout.LegacyPrefixes {
		sh := shard{prefix: p, list: p}
		if lo != "" {
			// The last byte of lo is a letter or digit, so the one before
			// it is printable ASCII: only keys of non-ASCII characters after
			// it sort between startAfter and p+lo (dropped by from).
			sh.startAfter = p + lo[:len(lo)-1] + string(lo[len(lo)-1]-1) + "~"
			sh.from = p + lo
		}
		if hi != "" {
			sh.stopAt = p + hi
		}
		out = append(out, sh)
	}
	return out
}

// split analyses the bucket range by range, ranges [first, end) of the
// len(bounds)+1.
// With a shard, only ranges [first, end) are analysed (every legacy row is
// still read: the rows the job indexes miss, into plan_odd, may hold a key of
// any range).
func (pr *planRun) split(ctx context.Context, bounds []string, first, end int) (*ledger.PlanFindings, sampler, error) {
	r, ps, st := pr.r, pr.ps, pr.st
	if err := ps.Split(ctx); err != nil {
		return nil, nil, err
	}
	if err := pr.phase(PhaseRows, func() error { return r.rows(ctx, ps, st, pr.o, &pr.prog, true) }); err != nil {
		return nil, nil, err
	}
	total := &ledger.PlanFindings{Copies: map[string]ledger.KindTotals{}}
	var sample []ledger.SamplePhoto
	for i := first; i < end; i++ {
		lo, hi := "", ""
		if i > 0 {
			lo = bounds[i-1]
		}
		if i < len(bounds) {
			hi = bounds[i]
		}
		err := pr.phase(PhaseRows, func() error {
			rr := rangeRefs{bounds: bounds, i: i, seen: map[string]bool{}}
			if err := st.PlanPhotosInRange(ctx, lo, hi, rr.add); err != nil {
				return err
			}
			return ps.BeginRange(ctx, lo, hi, rr.refs, rr.jobs)
		})
		if err != nil {
			return nil, nil, err
		}
		if err := pr.phase(pr.source, func() error { return r.list(ctx, ps, pr.page, rangeShards(lo, hi), pr.o, &pr.prog) }); err != nil {
			return nil, nil, err
		}
		err = pr.phase(PhaseJoining, func() error {
			f, err := ps.Analyze(ctx, pr.query())
			if err != nil {
				return err
			}
			mergeFindings(total, f, pr.o.Examples)
			if pr.o.Calibrate <= 0 {
				return nil
			}
			s, err := ps.SamplePhotos(ctx, pr.o.Calibrate, ArchiveClasses)
			sample = mergeSample(sample, s, pr.o.Calibrate)
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("plan: range %d of %d [%q, %q): %w", i+1, len(bounds)+1, lo, hi, err)
		}
	}
	return total, func(context.Context) ([]ledger.SamplePhoto, error) { return sample, nil }, nil
}

// rangeRefs collects, of the rows the job indexes find for range i (add is
// called once per row, as PlanPhotosInRange streams them), the key columns
// whose key is in the range and the jobs in the range: each row is found in
// the range of every job its columns name, and each of its columns and its
// job counted in exactly one. Only these are kept, not the rows.
type rangeRefs struct {
	bounds []string
	i      int
	// seen guards against a row coming twice (PlanPhotosInRange returns each
	// row once; a double would double its copies).
	seen map[string]bool
	refs []ledger.PlanRef
	jobs []ledger.PlanJob
}

func (r *rangeRefs) add(p ledger.Photo) error {
	if r.seen[p.ID] || !ledger.PlanIndexed(p) {
		return nil // twice, or in plan_odd
	}
	r.seen[p.ID] = true
	rr, _, _ := classifyRow(p)
	for _, ref := range rr {
		if rangeOf(r.bounds, keyPos(ref.Key)) == r.i {
			r.refs = append(r.refs, ref)
		}
		if ref.Job != "" && rangeOf(r.bounds, ref.Job) == r.i {
			r.jobs = append(r.jobs, ledger.PlanJob{PhotoID: ref.PhotoID, Class: ref.Class, Job: ref.Job})
		}
	}
	return nil
}

// mergeFindings adds a range's findings f to total, keeping the first
// examples in the order each query sorts them (the database sorts keys in
// byte order when a plan is split: ledger.PlanKeysBytewise).
func mergeFindings(total, f *ledger.PlanFindings, examples int) {
	for k, t := range f.Copies {
		s := total.Copies[k]
		s.Objects += t.Objects
		s.Bytes += t.Bytes
		s.Multipart += t.Multipart
		s.Parts += t.Parts
		s.Archived += t.Archived
		total.Copies[k] = s
	}
	total.MissingRefs += f.MissingRefs
	total.MissingPhotos += f.MissingPhotos
	total.SharedKeys += f.SharedKeys
	total.SharedJobs += f.SharedJobs
	total.SharedDerived += f.SharedDerived
	total.ArchiveClassCopies += f.ArchiveClassCopies
	total.Orphans += f.Orphans
	total.OrphanBytes += f.OrphanBytes
	total.AlreadyMoved += f.AlreadyMoved
	total.LedgerChecked = f.LedgerChecked
	byKey := func(x, y ledger.KeyExample) int {
		return cmpThen(strings.Compare(x.Key, y.Key), strings.Compare(x.PhotoID, y.PhotoID))
	}
	total.ArchiveClassExamples = firstExamples(total.ArchiveClassExamples, f.ArchiveClassExamples, examples, byKey)
	total.OrphanExamples = firstExamples(total.OrphanExamples, f.OrphanExamples, examples, byKey)
	total.MissingExamples = firstExamples(total.MissingExamples, f.MissingExamples, examples, func(x, y ledger.KeyExample) int {
		return cmpThen(strings.Compare(x.PhotoID, y.PhotoID), strings.Compare(x.Detail, y.Detail))
	})
	total.SharedKeyExamples = firstExamples(total.SharedKeyExamples, f.SharedKeyExamples, examples, func(x, y ledger.KeyExample) int {
		return cmpThen(cmp.Compare(y.Rows, x.Rows), strings.Compare(x.Key, y.Key))
	})
}

func cmpThen(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// firstExamples returns the first n of a and b in the given order.
func firstExamples(a, b []ledger.KeyExample, n int, order func(x, y ledger.KeyExample) int) []ledger.KeyExample {
	out := append(slices.Clone(a), b...)
	slices.SortStableFunc(out, order)
	if out == nil {
		out = []ledger.KeyExample{}
	}
	return out[:min(len(out), n)]
}

// mergeSample keeps the n photos of a and b first by the md5 of their id,
// the order SamplePhotos picks them in.
func mergeSample(a, b []ledger.SamplePhoto, n int) []ledger.SamplePhoto {
	out := append(a, b...)
	h := func(p ledger.SamplePhoto) string { s := md5.Sum([]byte(p.PhotoID)); return hex.EncodeToString(s[:]) }
	slices.SortFunc(out, func(x, y ledger.SamplePhoto) int { return strings.Compare(h(x), h(y)) })
	return out[:min(len(out), n)]
}
