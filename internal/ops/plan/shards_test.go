package plan

import (
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestShardsCoverEveryKeyOnce lists a set of awkward keys the way S3 would
// (prefix, start-after, byte order) through every shard and checks that each
// key under a legacy prefix comes out exactly once.
func TestShardsCoverEveryKeyOnce(t *testing.T) {
	t.Parallel()
	keys := []string{
		"uploaded/", "uploaded/\x01ctl.jpg", "uploaded/ space.jpg", "uploaded/!bang", "uploaded/0abc.jpg",
		"uploaded/9zz.jpg", "uploaded/:colon", "uploaded/A.jpg", "uploaded/Zz", "uploaded/_under", "uploaded/a.jpg",
		"uploaded/f0f0.jpg", "uploaded/z", "uploaded/{brace", "uploaded/~", "uploaded/~~tilde", "uploaded/\x7fdel",
		"uploaded/é.jpg", "uploaded/日本.jpg", "uploaded//double", "restored/x/y.png", "meta/", "meta/~a", "meta/\u00ff",
		"thumbnails/a.jpg", "animated/j/a_b.mp4", "other/not-legacy", "uploadedX/not-legacy",
	}
	sort.Strings(keys)
	list := func(prefix, startAfter string) []string {
		var out []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) && k > startAfter {
				out = append(out, k)
			}
		}
		return out
	}
	seen := map[string]int{}
	for _, sh := range shards([]string{"uploaded/", "restored/", "thumbnails/", "animated/", "meta/"}) {
		for _, k := range list(sh.list, sh.startAfter) {
			if sh.stopAt != "" && k >= sh.stopAt {
				break
			}
			if sh.skip != "" && strings.HasPrefix(k, sh.skip) {
				continue
			}
			require.True(t, strings.HasPrefix(k, sh.prefix), "shard %+v returned %q", sh, k)
			seen[k]++
		}
	}
	for _, k := range keys {
		want := 1
		if strings.HasPrefix(k, "other/") || strings.HasPrefix(k, "uploadedX/") {
			want = 0
		}
		require.Equal(t, want, seen[k], "key %q", k)
	}
}

func TestTopKKeepsTheLargest(t *testing.T) {
	t.Parallel()
	top := topK{k: 3}
	for _, s := range []int64{5, 1, 9, 7, 3, 9, 2} {
		top.offer(Object{Size: s})
	}
	var sizes []int64
	for _, o := range top.items {
		sizes = append(sizes, o.Size)
	}
	require.ElementsMatch(t, []int64{7, 9, 9}, sizes)
}

func TestPercentileInterpolatesLikePostgres(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0.0, percentile(nil, 0.5))
	require.Equal(t, 2.0, percentile([]float64{3, 1, 2}, 0.5))
	require.InDelta(t, 2.5, percentile([]float64{4, 1, 2, 3}, 0.5), 1e-12)
	require.InDelta(t, 9.1, percentile([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9), 1e-12)
}

func TestCheckScratchRefusesUserAndLegacyPrefixes(t *testing.T) {
	t.Parallel()
	require.NoError(t, checkScratch("keymigrate-plan-scratch/"))
	for _, bad := range []string{"users/", "users/x/", "uploaded/", "meta/scratch/", "nodash", "a//", "", "upload"} {
		require.Error(t, checkScratch(bad), bad)
	}
}

func TestMoneyAndDurations(t *testing.T) {
	t.Parallel()
	require.Equal(t, "$0", money(0))
	require.Equal(t, "$0.0049", money(0.0049))
	require.Equal(t, "$12.35", money(12.345))
	require.Equal(t, "$12,346", money(12345.6))
	require.Equal(t, "120ms", dur(0.12))
	require.Equal(t, "1m30s", dur(90))
	require.Equal(t, "3h0m0s", dur(3*3600))
	require.Equal(t, "3.0 days", dur(3*86400))
}
