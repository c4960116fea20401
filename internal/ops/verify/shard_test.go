package verify_test

import (
	"context"
	"encoding/json"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// damagedMigration migrates a seeded bucket and damages it in ways each
// phase of verify finds: a missing copy a row points at, a late animation
// under the old layout, and a row not migrated whose legacy object is gone.
func damagedMigration(t *testing.T, photos int) *testenv.Env {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: photos, Seed: 91, OrphanRate: 0.2, OwnerlessRate: 0.05}
	env.Seed(t, opts)
	env.Migrate(t)
	var owned []seed.Photo
	for _, p := range seed.Generate(opts) {
		if p.OwnerID != nil {
			owned = append(owned, p)
		}
	}
	require.GreaterOrEqual(t, len(owned), 3)
	l, err := keylayout.ParseLegacy(owned[0].Original)
	require.NoError(t, err)
	k, err := l.UserScoped(*owned[0].OwnerID, owned[0].ID)
	require.NoError(t, err)
	require.NoError(t, env.Objects.Delete(ctx, k))
	env.Put(t, "animated/"+owned[1].JobID+"/0a0b0c0d-late_loop.mp4", []byte("late"), "video/mp4", nil)
	env.InsertPhoto(t, "00000000-0000-4000-8000-0000000000aa", owned[2].OwnerID, "uploaded/ffffffff-0000-4000-8000-00000000dead.jpg", nil, nil)
	return env
}

// comparable is what must be equal between a sharded pass and an unsharded
// one: every count and the problems found.
func comparable(t *testing.T, r *verify.Report) map[string]any {
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"shard", "shards", "resumed", "already_done", "problems", "orphans", "requeue", "repair"} {
		delete(m, k)
	}
	var keys []string
	for _, p := range r.Problems {
		keys = append(keys, p.Kind+" "+p.PhotoID+" "+p.Key)
	}
	sort.Strings(keys)
	m["problem_list"] = keys
	orphans := append([]string(nil), r.Orphans...)
	sort.Strings(orphans)
	m["orphan_list"] = orphans
	m["requeue_list"], m["repair_list"] = r.Requeue, r.Repair
	return m
}

// Four shards check disjoint ranges that together cover everything: each
// shard's counts add up to the unsharded pass's exactly (an overlap counts
// twice, a gap once less), and the union of their tallies is the unsharded
// verdict, problem for problem.
func TestShardsAreDisjointAndTheirUnionIsTheVerdict(t *testing.T) {
	t.Parallel()
	env := damagedMigration(t, 120)
	ctx := context.Background()
	whole, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{MaxProblems: 1000})
	require.NoError(t, err)
	require.False(t, whole.OK())
	require.Positive(t, whole.ProblemsByKind[verify.ReferencedKeyMissing])
	require.Positive(t, whole.ProblemsByKind[verify.UnmovedLegacyObject])
	require.Positive(t, whole.OrphanCount)

	const n = 4
	o := verify.Options{MaxProblems: 1000, Shards: n, Resume: true}
	_, _, err = verify.Union(ctx, env.Store, o)
	require.ErrorIs(t, err, verify.ErrNotDone, "no shard ran: no verdict")
	var rows, objects, listed int64
	for i := range n {
		o.Shard = i
		r, err := verify.Run(ctx, env.Store, env.Objects, o)
		require.NoError(t, err)
		require.Less(t, r.RowsChecked, whole.RowsChecked, "shard %d checks a part of the rows", i)
		rows, objects, listed = rows+r.RowsChecked, objects+r.ObjectsChecked, listed+r.ListedObjects
		if i < n-1 {
			_, states, err := verify.Union(ctx, env.Store, o)
			require.ErrorIs(t, err, verify.ErrNotDone, "shard %d of %d done: no verdict yet", i, n)
			require.False(t, states[n-1].Done)
		}
	}
	require.Equal(t, whole.RowsChecked, rows)
	require.Equal(t, whole.ObjectsChecked, objects)
	require.Equal(t, whole.ListedObjects, listed)
	u, states, err := verify.Union(ctx, env.Store, o)
	require.NoError(t, err)
	for _, s := range states {
		require.True(t, s.Done)
	}
	require.Equal(t, comparable(t, whole), comparable(t, u))

	// A shard run again after its sharded pass completed (a retried pod, or
	// a process killed after it finished) prints its recorded tally: the
	// verdict stands until the pass is restarted.
	o.Shard = 0
	again, err := verify.Run(ctx, env.Store, env.Objects, o)
	require.NoError(t, err)
	require.True(t, again.AlreadyDone)
	u2, _, err := verify.Union(ctx, env.Store, o)
	require.NoError(t, err)
	require.Equal(t, comparable(t, u), comparable(t, u2))

	// Restarted, the pass has no verdict until all its shards ran again.
	require.NoError(t, verify.ResetPass(ctx, env.Store, o))
	again, err = verify.Run(ctx, env.Store, env.Objects, o)
	require.NoError(t, err)
	require.False(t, again.AlreadyDone)
	_, _, err = verify.Union(ctx, env.Store, o)
	require.ErrorIs(t, err, verify.ErrNotDone)
	// While the pass is not complete, a finished shard is not redone.
	done, err := verify.Run(ctx, env.Store, env.Objects, o)
	require.NoError(t, err)
	require.True(t, done.AlreadyDone)
	require.Zero(t, done.Heads-again.Heads, "nothing checked again")
	require.Equal(t, again.RowsChecked, done.RowsChecked)
}

// The report and the tally in the ledger keep counts and at most
// MaxProblems examples of each list, whatever the number of problems.
func TestExamplesAreBounded(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	res := env.Seed(t, seed.Options{Photos: 60, Seed: 5, OrphanRate: 0.5})
	// Not migrated: every owned row references a legacy key.
	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{MaxProblems: 3, Resume: true})
	require.NoError(t, err)
	require.Greater(t, r.ProblemCount, int64(10))
	require.Len(t, r.Problems, 3)
	require.EqualValues(t, res.Orphans, r.OrphanCount)
	require.Greater(t, r.OrphanCount, int64(3))
	require.Len(t, r.Orphans, 3)
	cs, err := env.Store.PassCursorList(ctx, ledger.PassVerify, verify.Scope(verify.Options{}), 1)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	var tally verify.Report
	require.NoError(t, json.Unmarshal(cs[0].Tally, &tally))
	require.Len(t, tally.Problems, 3)
	require.Equal(t, r.ProblemCount, tally.ProblemCount)
	require.Less(t, len(cs[0].Tally), 4000, "the tally is a few counts and examples")
}
