package verify_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/producer"
)

func TestVerifyScopedToARunChecksOnlyItsPhotos(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 30, Owners: 3, Seed: 72, OwnerlessRate: 0.01}
	env.Seed(t, opts)
	owner := ""
	staged := map[string]bool{}
	for _, p := range seed.Generate(opts) {
		if p.OwnerID != nil && (owner == "" || owner == *p.OwnerID) {
			owner = *p.OwnerID
			staged[p.ID] = true
		}
	}
	s1 := env.MigrateWith(t, producer.Config{Selection: &ledger.Selection{Owners: []string{owner}}})
	s2 := env.MigrateWith(t, producer.Config{})

	// Break one photo of the second run: its new original disappears.
	var victim string
	for _, m := range ledgertest.PhotoMoves(t, env.Store) {
		if m.RunID == s2.RunID && m.State == "migrated" {
			victim = m.PhotoID
			break
		}
	}
	require.NotEmpty(t, victim, "a photo the second run migrated")
	p, err := env.Store.PhotoGet(ctx, victim)
	require.NoError(t, err)
	key := p.Original

	require.False(t, staged[victim])
	require.NoError(t, env.Objects.Delete(ctx, key))

	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{RunID: s1.RunID})
	require.NoError(t, err)
	require.True(t, r.OK(), "the staged run's photos are fine: %+v", r.Problems)
	require.EqualValues(t, len(staged), r.RowsChecked)
	require.False(t, r.LegacyListed)

	r, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{RunID: s2.RunID})
	require.NoError(t, err)
	require.False(t, r.OK())
	require.EqualValues(t, 30-len(staged), r.RowsChecked)
	for _, p := range r.Problems {
		require.Equal(t, victim, p.PhotoID)
	}
	require.Contains(t, r.Repair, victim, "a missing copy is repaired only on request")

	_, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{RunID: "run-unknown"})
	require.ErrorIs(t, err, ledger.ErrRunNotFound)
}

// verify --run R --shard i/n: the shards split the run's photos (a hash of
// the photo id), so their counts add up to the unsharded run pass's exactly
// (an overlap counts twice, a gap once less), each checks a part, and the
// union of their tallies is the unsharded run verdict, problem for problem.
func TestVerifyOfARunSplitsIntoShards(t *testing.T) {
	t.Parallel()
	env := damagedMigration(t, 120)
	ctx := context.Background()
	var runID string
	for _, m := range ledgertest.PhotoMoves(t, env.Store) {
		if m.State == "migrated" {
			runID = m.RunID
			break
		}
	}
	require.NotEmpty(t, runID, "a migrated photo's run")
	whole, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{RunID: runID, MaxProblems: 1000})
	require.NoError(t, err)
	require.False(t, whole.OK(), "the damaged migration's missing copy is in the run")
	require.Positive(t, whole.ObjectsChecked)

	const n = 3
	o := verify.Options{RunID: runID, MaxProblems: 1000, Shards: n, Resume: true}
	var rows, objects int64
	for i := range n {
		o.Shard = i
		r, err := verify.Run(ctx, env.Store, env.Objects, o)
		require.NoError(t, err)
		require.Less(t, r.RowsChecked, whole.RowsChecked, "shard %d checks a part of the run's rows", i)
		require.Positive(t, r.RowsChecked, "shard %d checks some of the run's rows", i)
		rows, objects = rows+r.RowsChecked, objects+r.ObjectsChecked
		if i < n-1 {
			_, _, err := verify.Union(ctx, env.Store, o)
			require.ErrorIs(t, err, verify.ErrNotDone)
		}
	}
	require.Equal(t, whole.RowsChecked, rows)
	require.Equal(t, whole.ObjectsChecked, objects)
	u, _, err := verify.Union(ctx, env.Store, o)
	require.NoError(t, err)
	require.Equal(t, comparable(t, whole), comparable(t, u))
	require.False(t, u.LegacyListed)

	// A pass over the run is not the bucket-wide pass: its cursors are its own.
	all, err := env.Store.PassCursorList(ctx, ledger.PassVerify, verify.Scope(verify.Options{}), n)
	require.NoError(t, err)
	require.Empty(t, all)
}
