package plan_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// A plan split into ranges of job ids finds exactly what a plan of the whole
// bucket finds: rows and objects on both sides of a bound, a key shared by
// rows found in two ranges, a row naming jobs of two ranges, rows the job
// indexes do not cover, and orphans in every range.
func TestPlanSplitIntoRangesFindsWhatOneRangeFinds(t *testing.T) {
	b := setup(t, seed.Options{Photos: 60, Seed: 94, OwnerlessRate: 0.1, OrphanRate: 0.2})
	env := b.env
	bounds := awkwardBounds
	awkward(t, b)

	opts := plan.Options{Examples: 50, Top: 5}
	whole := b.plan(t, opts)
	opts.RangeBounds = bounds
	split := b.plan(t, opts)

	require.Equal(t, 1, whole.Ranges)
	require.Equal(t, len(bounds)+1, split.Ranges)
	require.Equal(t, whole.Photos, split.Photos)
	require.Equal(t, whole.Copies, split.Copies)
	require.Equal(t, whole.Problems, split.Problems)
	require.Equal(t, whole.AlreadyMoved, split.AlreadyMoved)
	require.Equal(t, whole.Largest, split.Largest)
	require.Equal(t, whole.Listing.Objects, split.Listing.Objects)
	require.Equal(t, whole.Listing.Bytes, split.Listing.Bytes)
	require.Equal(t, whole.Listing.Prefixes, split.Listing.Prefixes)
	// All of it, but for how it was cut.
	split.Ranges, split.Listing.Shards = whole.Ranges, whole.Listing.Shards
	require.Equal(t, findings(whole), findings(split))

	// And the answers are the ones built above (the whole plan's are the
	// reference the other plan tests check).
	shared := map[string]int64{}
	for _, e := range split.Problem("legacy_objects_shared_by_rows").Examples {
		shared[e.Key] = e.Rows
	}
	require.Equal(t, map[string]int64{"uploaded/b0000000.jpg": 2, "thumbnails/b0000000.jpg": 3}, shared)
	orphans := map[string]bool{}
	for _, e := range split.Problem("orphans").Examples {
		orphans[e.Key] = true
	}
	for _, k := range []string{"uploaded/0orphan.jpg", "uploaded/3zzz.jpg", "thumbnails/4.jpg", "meta/7zzzzz.json",
		"animated/8/y_2.mp4", "uploaded/azzzzzzy.jpg", "restored/b0000000x/r.png", "thumbnails/bzzz.jpg", "meta/c.json", "uploaded/zzz.jpg"} {
		require.True(t, orphans[k], "orphan %s", k)
	}
	for _, k := range []string{"meta/b0000000.json", "animated/b0000000/x_1.mp4", "meta/azzzzzzz.json", "meta/9.dotted.json", "uploaded/b0000000"} {
		require.False(t, orphans[k], "%s is derived by a row (or unrecognised)", k)
	}
	missing := map[string]bool{}
	for _, e := range split.Problem("rows_pointing_at_missing_objects").Examples {
		missing[e.Key] = true
	}
	require.True(t, missing["uploaded/7zzz.jpg"])

	// Cut by the plan itself, from a sample of the jobs: only with the job
	// indexes docs/guarantees.md asks for.
	_, err := env.Store.Pool().Exec(context.Background(), `ANALYZE photos`)
	require.NoError(t, err)
	auto := plan.Options{Examples: 50, Top: 5, RangeObjects: 50}
	unsplit := b.plan(t, auto)
	require.Equal(t, 1, unsplit.Ranges)
	require.Contains(t, unsplit.RangesNote, "job indexes")
	for _, idx := range ledger.ApplicationIndexes {
		_, err := env.Store.Pool().Exec(context.Background(), idx)
		require.NoError(t, err)
	}
	cut := b.plan(t, auto)
	require.Greater(t, cut.Ranges, 3, "about 4 objects per row, 50 per range")
	require.Empty(t, cut.RangesNote)
	cut.Ranges, cut.Listing.Shards = whole.Ranges, whole.Listing.Shards
	require.Equal(t, findings(whole), findings(cut))

	// A calibration picks its photos across the ranges.
	bucket := b.bucket(t)
	opts.Calibrate = 4
	c := b.plan(t, opts).Estimate.Calibration
	require.Equal(t, plan.CalibratedByScratchCopy, c.Source)
	require.EqualValues(t, 4, c.Photos)
	require.Equal(t, bucket, b.bucket(t))
}

// awkwardBounds cut awkward's bucket into five ranges.
var awkwardBounds = []string{"4", "8", "b0000000", "c"}

// awkward adds to a seeded bucket what is hard to cut into ranges: rows and
// objects on both sides of a bound, a key shared by rows found in two
// ranges, a row naming jobs of two ranges, rows the job indexes do not
// cover, a missing object, and orphans in every range.
func awkward(t *testing.T, b *testBundle) {
	t.Helper()
	env := b.env
	owner := func() *string { return testenv.Ptr(uuid.NewString()) }
	put := func(keys ...string) {
		for _, k := range keys {
			env.Put(t, k, []byte("x"+k), "image/jpeg", nil)
		}
	}
	// Job "b0000000" is the third bound itself; "azzzzzzz" the last job
	// before it. Two rows share b0000000's original and derive its metadata;
	// a third row names azzzzzzz's original and b0000000's thumbnail (two
	// jobs: a dead letter, still sharing the thumbnail).
	put("uploaded/b0000000.jpg", "thumbnails/b0000000.jpg", "meta/b0000000.json", "animated/b0000000/x_1.mp4",
		"uploaded/azzzzzzz.jpg", "meta/azzzzzzz.json",
		"uploaded/b0000000") // a key equal to the bound, unrecognised
	env.InsertPhoto(t, uuid.NewString(), owner(), "uploaded/b0000000.jpg", nil, testenv.Ptr("thumbnails/b0000000.jpg"))
	env.InsertPhoto(t, uuid.NewString(), owner(), "uploaded/b0000000.jpg", nil, nil)
	env.InsertPhoto(t, uuid.NewString(), owner(), "uploaded/azzzzzzz.jpg", nil, testenv.Ptr("thumbnails/b0000000.jpg"))
	// Rows the job indexes miss: a job with a dot, a key outside the
	// legacy prefixes, a thumbnail in the original column.
	put("uploaded/9.dotted.jpg", "meta/9.dotted.json")
	env.InsertPhoto(t, uuid.NewString(), owner(), "uploaded/9.dotted.jpg", nil, nil)
	env.InsertPhoto(t, uuid.NewString(), owner(), "elsewhere/x.jpg", nil, nil)
	env.InsertPhoto(t, uuid.NewString(), owner(), "thumbnails/b0000000.jpg", nil, nil)
	// A row whose original is missing, just below a bound.
	env.InsertPhoto(t, uuid.NewString(), owner(), "uploaded/7zzz.jpg", nil, nil)
	// An orphan in every range, one on each side of each bound.
	put("uploaded/0orphan.jpg", "uploaded/3zzz.jpg", "thumbnails/4.jpg", "meta/7zzzzz.json",
		"animated/8/y_2.mp4", "uploaded/azzzzzzy.jpg", "restored/b0000000x/r.png", "thumbnails/bzzz.jpg",
		"meta/c.json", "uploaded/zzz.jpg")

}

// Each row comes once from PlanPhotosInRange, however many of its key columns
// name a job of the range, and a row whose columns name jobs of two ranges
// comes in each: at 10^7 photos the plan held every range's rows two or three
// times over (docs/scale.md, "plan's memory"), and a row dropped from a range
// would lose its copies there.
func TestPlanPhotosInRangeReturnsEachRowOnce(t *testing.T) {
	b := setup(t, seed.Options{Photos: 60, Seed: 94, OwnerlessRate: 0.1})
	awkward(t, b)
	ctx := context.Background()
	read := func(lo, hi string) map[string]int {
		n := map[string]int{}
		require.NoError(t, b.env.Store.PlanPhotosInRange(ctx, lo, hi, func(p ledger.Photo) error { n[p.ID]++; return nil }))
		return n
	}
	whole := read("", "")
	require.Greater(t, len(whole), 60, "the seeded rows and the awkward ones")
	union := map[string]int{}
	for i := 0; i <= len(awkwardBounds); i++ {
		lo, hi := "", ""
		if i > 0 {
			lo = awkwardBounds[i-1]
		}
		if i < len(awkwardBounds) {
			hi = awkwardBounds[i]
		}
		for id, n := range read(lo, hi) {
			require.Equal(t, 1, n, "photo %s in [%q, %q)", id, lo, hi)
			union[id]++
		}
	}
	for id, n := range whole {
		require.Equal(t, 1, n, "photo %s in the whole range", id)
		require.Contains(t, union, id)
	}
	require.Len(t, union, len(whole))
	// A row naming jobs of two ranges (awkward's third row: azzzzzzz's
	// original, b0000000's thumbnail) comes in both.
	var twice int
	for _, n := range union {
		if n > 1 {
			twice++
		}
	}
	require.Positive(t, twice, "a row whose columns name jobs of two ranges")
}
