package ledger_test

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The shards of a cleanup pass are disjoint and together cover every value
// keymigrate.job_hash can take, for any shard count.
func TestCleanupShardRangesTileTheHashSpace(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 3, 4, 7, 16, 100, 1000} {
		prev := int64(math.MinInt32)
		for i := range n {
			lo, hi, err := ledger.CleanupShardRange(i, n)
			require.NoError(t, err)
			require.Equal(t, prev, lo, "shard %d/%d starts where shard %d ended: no gap, no overlap", i, n, i-1)
			require.Less(t, lo, hi, "shard %d/%d is not empty", i, n)
			prev = hi
		}
		require.Equal(t, int64(math.MaxInt32)+1, prev, "the last of %d shards ends after the largest hash", n)
	}
	_, _, err := ledger.CleanupShardRange(4, 4)
	var se *ledger.ShardError
	require.ErrorAs(t, err, &se)
}

// The hash spreads job ids evenly: 4 shards of 200,000 uuid-like job ids each
// get a quarter, within 2%.
func TestCleanupShardsAreBalanced(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	const n, jobs = 4, 200_000
	rows, err := env.Store.Pool().Query(ctx, `SELECT keymigrate.job_hash(gen_random_uuid()::text) FROM generate_series(1, $1)`, jobs)
	require.NoError(t, err)
	counts := make([]int, n)
	for rows.Next() {
		var h int64
		require.NoError(t, rows.Scan(&h))
		for i := range n {
			lo, hi, _ := ledger.CleanupShardRange(i, n)
			if h >= lo && h < hi {
				counts[i]++
			}
		}
	}
	require.NoError(t, rows.Err())
	total := 0
	for i, c := range counts {
		total += c
		require.InDelta(t, jobs/n, c, jobs/n*0.02, "shard %d/%d: %v", i, n, counts)
	}
	require.Equal(t, jobs, total, "every job in exactly one shard")
}
