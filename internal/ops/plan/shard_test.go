package plan_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// shards runs every shard of n with o, each report through JSON as
// 'migratectl plan --shard i/n' prints it and 'plan merge' reads it.
func (b *testBundle) shards(t *testing.T, o plan.Options, n int) ([]string, []*plan.Report) {
	t.Helper()
	var names []string
	var parts []*plan.Report
	for i := range n {
		o.Shard, o.Shards = i, n
		r := b.plan(t, o)
		require.NotNil(t, r.Partial)
		js, err := json.Marshal(r)
		require.NoError(t, err)
		var back plan.Report
		require.NoError(t, json.Unmarshal(js, &back))
		names = append(names, fmt.Sprintf("part-%d.json", i))
		parts = append(parts, &back)
	}
	return names, parts
}

func merged(t *testing.T, names []string, parts []*plan.Report) *plan.Report {
	t.Helper()
	r, err := plan.Merge(names, parts)
	require.NoError(t, err)
	return r
}

// A plan run as 3 shards (and as more shards than ranges) and merged finds
// exactly what one process finds: every count, byte, copy, orphan, problem
// and example, the largest objects, and the estimate made from them.
func TestPlanInShardsMergedFindsWhatOneProcessFinds(t *testing.T) {
	b := setup(t, seed.Options{Photos: 60, Seed: 94, OwnerlessRate: 0.1, OrphanRate: 0.2})
	awkward(t, b)
	env := b.env
	// Rows counted in Go, by the shard their id hashes to.
	env.InsertPhoto(t, uuid.NewString(), testenv.Ptr("not-an-owner"), "uploaded/5invalid.jpg", nil, nil)
	env.InsertPhoto(t, uuid.NewString(), testenv.Ptr("also not"), "uploaded/anotherinvalid.jpg", nil, nil)
	for _, k := range []string{"uploaded/9big.jpg", "thumbnails/2big.jpg", "meta/czzbig.json"} {
		env.Put(t, k, make([]byte, 4000+len(k)), "image/jpeg", nil)
	}

	// Few examples and a short top: which ones a merge keeps matters.
	opts := plan.Options{Examples: 2, Top: 3, RangeBounds: awkwardBounds}
	one := b.plan(t, opts)
	require.Equal(t, len(awkwardBounds)+1, one.Ranges)
	for _, n := range []int{3, 7} {
		names, parts := b.shards(t, opts, n)
		for i, p := range parts {
			require.Less(t, p.Photos.LegacyRows, one.Photos.LegacyRows, "shard %d/%d counts only its rows", i, n)
		}
		m := merged(t, names, parts)
		require.Nil(t, m.Partial)
		require.Equal(t, one.Photos, m.Photos, "%d shards", n)
		require.Equal(t, one.Copies, m.Copies, "%d shards", n)
		require.Equal(t, one.Problems, m.Problems, "%d shards", n)
		require.Equal(t, one.Largest, m.Largest, "%d shards", n)
		require.Equal(t, one.AlreadyMoved, m.AlreadyMoved, "%d shards", n)
		require.Equal(t, one.Listing.Prefixes, m.Listing.Prefixes, "%d shards", n)
		require.Equal(t, one.Listing.ByStorageClass, m.Listing.ByStorageClass, "%d shards", n)
		require.Equal(t, one.Listing.Requests, m.Listing.Requests, "%d shards: the same key ranges listed", n)
		require.Equal(t, one.Estimate, m.Estimate, "%d shards", n)
		// All of it, but for when and how fast.
		require.Equal(t, findings(one), findings(m), "%d shards", n)
	}

	// A shard needs the ranges: refused without the job indexes that
	// find a range's rows, or for a plan of the whole bucket at once.
	auto := plan.Options{Examples: 2, Top: 3, RangeObjects: 50, Shard: 1, Shards: 3}
	for _, o := range []plan.Options{auto, {RangeObjects: -1, Shard: 0, Shards: 2}, {Shard: 2, Shards: 2}} {
		_, err := plan.Run(context.Background(), env.Store, env.Objects, o)
		require.Error(t, err)
		require.Contains(t, err.Error(), fmt.Sprintf("plan shard %d/%d: ", o.Shard, o.Shards))
		if o.RangeObjects == 50 {
			require.Contains(t, err.Error(), "job indexes")
		}
	}

	// Cut by each shard itself from the repeatable sample of the jobs.
	for _, idx := range ledger.ApplicationIndexes {
		_, err := env.Store.Pool().Exec(context.Background(), idx)
		require.NoError(t, err)
	}
	_, err := env.Store.Pool().Exec(context.Background(), `ANALYZE photos`)
	require.NoError(t, err)
	auto.Shard, auto.Shards = 0, 0
	cut := b.plan(t, auto)
	require.Greater(t, cut.Ranges, 3)
	names, parts := b.shards(t, auto, 3)
	m := merged(t, names, parts)
	require.Equal(t, cut.Ranges, m.Ranges)
	require.Equal(t, findings(cut), findings(m))
	// A shard run again with another shard's cut (plan --bounds-from).
	again := auto
	again.RangeBounds = parts[0].Partial.Cut
	_, redone := b.shards(t, again, 3)
	m = merged(t, names, []*plan.Report{parts[0], redone[1], parts[2]})
	require.Equal(t, findings(cut), findings(m))
	// And a bucket too small to be cut: the last shard takes its one range.
	small := plan.Options{Examples: 2, Top: 3}
	names, parts = b.shards(t, small, 2)
	require.Equal(t, 0, parts[0].Ranges)
	require.Equal(t, 1, parts[1].Ranges)
	m = merged(t, names, parts)
	whole := b.plan(t, small)
	m.Listing.Shards = whole.Listing.Shards // listed in one range, not 485 key ranges
	require.Equal(t, findings(whole), findings(m))
}

// A merge refuses what would not add up to the plan of the whole bucket, and
// says what is wrong and what to do.
func TestPlanMergeRefusesPartsThatDoNotMakeAPlan(t *testing.T) {
	b := setup(t, seed.Options{Photos: 20, Seed: 7})
	opts := plan.Options{RangeBounds: awkwardBounds}
	names, parts := b.shards(t, opts, 3)
	merged(t, names, parts)
	refused := func(names []string, parts []*plan.Report, want ...string) {
		t.Helper()
		_, err := plan.Merge(names, parts)
		require.Error(t, err)
		for _, w := range want {
			require.Contains(t, err.Error(), w)
		}
	}
	clone := func(r *plan.Report) *plan.Report {
		js, err := json.Marshal(r)
		require.NoError(t, err)
		var c plan.Report
		require.NoError(t, json.Unmarshal(js, &c))
		return &c
	}

	refused(nil, nil, "not a shard's partial report: none given")
	refused(names[:2], parts[:2], "missing shard 2/3", "every shard 0/3 to 2/3")
	refused([]string{names[0], names[2]}, []*plan.Report{parts[0], parts[2]}, "missing shard 1/3")
	refused(append(names, "again.json"), append(parts, parts[1]), "duplicate shard 1/3", "part-1.json", "again.json")

	_, four := b.shards(t, opts, 4)
	refused([]string{names[0], names[1], "four-2.json"}, []*plan.Report{parts[0], parts[1], four[2]},
		"mismatched shard counts", "part-0.json is shard 0/3", "four-2.json is shard 2/4")

	other := opts
	other.Workers, other.Prices.PutPer1000 = 12, 0.006
	_, odd := b.shards(t, other, 3)
	refused([]string{names[0], names[1], "workers.json"}, []*plan.Report{parts[0], parts[1], odd[2]},
		"mismatched options", "workers.json", "workers (1 against 12)", "prices.put_copy_post_list_per_1000 (0.005 against 0.006)")
	cut := opts
	cut.RangeObjects = 7
	_, odd = b.shards(t, cut, 3)
	refused([]string{"a", "b", "c"}, []*plan.Report{parts[0], odd[1], parts[2]}, "mismatched options", "range_objects")

	whole := b.plan(t, opts)
	refused([]string{"part-0.json", "whole.json", "part-2.json"}, []*plan.Report{parts[0], whole, parts[2]}, "whole.json: not a shard's partial report")

	// Shards that cut the job ids differently (a table changed between
	// their samples): a gap or an overlap.
	moved := clone(parts[1])
	moved.Partial.Lo = "5"
	_, err := plan.Merge(names, []*plan.Report{parts[0], moved, parts[2]})
	require.ErrorIs(t, err, plan.ErrShardsCutDifferently)
	refused(names, []*plan.Report{parts[0], moved, parts[2]}, "cut the job ids differently", "part-1.json (shard 1/3)", `job ids ["5", "b0000000")`, `ends at range 1 of 5, job id "4"`)
	moved = clone(parts[2])
	moved.Partial.FirstRange--
	refused(names, []*plan.Report{parts[0], parts[1], moved}, "cut the job ids differently")
	bucket := clone(parts[2])
	bucket.Bucket = "another"
	refused(names, []*plan.Report{parts[0], parts[1], bucket}, "mismatched buckets")
}
