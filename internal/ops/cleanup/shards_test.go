package cleanup_test

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
)

// listed reads a --list stream: the keys of each kind of line.
func listed(t *testing.T, b *bytes.Buffer) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	sc := bufio.NewScanner(b)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		require.Len(t, f, 4, sc.Text())
		out[f[0]] = append(out[f[0]], f[1])
	}
	return out
}

// The shards of a pass split the legacy objects between them: each object is
// looked at by exactly one shard, and the shards together decide exactly what
// one unsharded cleanup decides (dry, on the same ledger), then delete it.
func TestShardsAreDisjointAndTheirUnionIsAnUnshardedCleanup(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	env.Seed(t, seed.Options{Photos: 60, Seed: 77, OwnerlessRate: 0.1, OrphanRate: 0.2})
	env.Migrate(t)
	// One new copy lost: its legacy object must be kept, by whichever shard has it.
	var copyKey string
	require.NoError(t, env.Objects.ListEach(ctx, "users/", func(k string, _ int64, _ string) error {
		if copyKey == "" {
			copyKey = k
		}
		return nil
	}))
	require.NoError(t, env.Objects.Delete(ctx, copyKey))

	var whole bytes.Buffer
	all, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0, DryRun: true, List: &whole})
	require.NoError(t, err)
	require.True(t, all.Finished)
	wholeList := listed(t, &whole)
	require.Positive(t, all.Deleted)

	const n = 4
	seen := map[string]int{}
	union := map[string][]string{}
	var total cleanup.Report
	total.Finished = true
	for i := range n {
		var b bytes.Buffer
		r, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0, DryRun: true, Shard: i, Shards: n, Batch: 7, List: &b})
		require.NoError(t, err)
		require.Positive(t, r.Checked, "shard %d/%d has work (the hash spreads 60 jobs)", i, n)
		for kind, keys := range listed(t, &b) {
			for _, k := range keys {
				seen[k]++
			}
			union[kind] = append(union[kind], keys...)
		}
		total.Merge(r)
	}
	for k, c := range seen {
		require.Equal(t, 1, c, "%s was looked at by %d shards", k, c)
	}
	for kind := range wholeList {
		require.ElementsMatch(t, wholeList[kind], union[kind], kind)
	}
	require.Equal(t, all.Checked, total.Checked)
	require.Equal(t, all.Deleted, total.Deleted)
	require.Equal(t, all.Bytes, total.Bytes)
	require.Equal(t, all.Kept, total.Kept)
	require.EqualValues(t, 1, total.Kept[cleanup.KeptCopyMissing], "%+v", total.KeptExamples)
	require.True(t, total.Finished)

	// The pass's status is the union of its shards.
	passes, err := cleanup.Status(ctx, env.Store)
	require.NoError(t, err)
	var sharded *cleanup.PassReport
	for i := range passes {
		if passes[i].Shards == n {
			sharded = &passes[i]
		}
	}
	require.NotNil(t, sharded)
	require.Len(t, sharded.Each, n)
	require.Empty(t, sharded.Missing)
	require.Equal(t, all.Deleted, sharded.Total.Deleted)
	require.True(t, sharded.Total.Finished)

	// The same shards, for real: they delete what the dry run announced.
	before := legacyKeys(t, env)
	for i := range n {
		_, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0, Shard: i, Shards: n, Batch: 7})
		require.NoError(t, err)
	}
	after := legacyKeys(t, env)
	var gone []string
	for k := range before {
		if !after[k] {
			gone = append(gone, k)
		}
	}
	require.ElementsMatch(t, wholeList["would_delete"], gone)

	// A finished shard is not redone; --again starts it over.
	again, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0, Shard: 1, Shards: n})
	require.NoError(t, err)
	require.True(t, again.AlreadyFinished)
	redo, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0, Shard: 1, Shards: n, Again: true})
	require.NoError(t, err)
	require.False(t, redo.AlreadyFinished)
	require.Zero(t, redo.Deleted, "nothing left to delete in shard 1")
}
