package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// --shard says what was wrong and what to give.
func TestCleanupShardFlag(t *testing.T) {
	t.Parallel()
	for _, ok := range []struct {
		v        string
		shard, n int
	}{{"0/1", 0, 1}, {"3/4", 3, 4}, {"0/1000", 0, 1000}} {
		i, n, err := parseShardFlag(ok.v)
		require.NoError(t, err, ok.v)
		require.Equal(t, ok.shard, i)
		require.Equal(t, ok.n, n)
	}
	cases := map[string]string{
		"4/4":  `--shard "4/4": give i/n with 0 <= i < n (for example --shard 0/4 to --shard 3/4)`,
		"0/0":  `--shard "0/0": give i/n with 0 <= i < n (for example --shard 0/4 to --shard 3/4)`,
		"-1/2": `--shard "-1/2": give i/n with 0 <= i < n (for example --shard 0/4 to --shard 3/4)`,
		"1":    `--shard "1": give i/n, shard i of n with 0 <= i < n (for example --shard 0/4)`,
		"1/2x": `--shard "1/2x": give i/n, shard i of n with 0 <= i < n (for example --shard 0/4)`,
	}
	for v, want := range cases {
		_, _, err := parseShardFlag(v)
		require.EqualError(t, err, want, v)
	}
}
