package status_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/status"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/producer"
)

func TestStatusScopedToARunCountsOnlyItsPhotos(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 40, Owners: 4, Seed: 71, OwnerlessRate: 0.01}
	env.Seed(t, opts)
	owner := ""
	n := 0
	for _, p := range seed.Generate(opts) {
		if p.OwnerID != nil && (owner == "" || owner == *p.OwnerID) {
			owner = *p.OwnerID
			n++
		}
	}
	staged := env.MigrateWith(t, producer.Config{Selection: &ledger.Selection{Owners: []string{owner}}})

	s, err := status.Take(ctx, status.Source{Store: env.Store, RunID: staged.RunID}, time.Minute)
	require.NoError(t, err)
	require.EqualValues(t, n, s.Total)
	require.EqualValues(t, n, s.States["migrated"])
	require.Zero(t, s.States["pending"], "a run's photos are all in the ledger")
	require.Zero(t, s.Legacy)
	require.NotNil(t, s.Run)
	require.Equal(t, []string{owner}, s.Run.Selection.Owners)
	require.EqualValues(t, n, s.Run.Counts.Enqueued)
	require.Greater(t, s.Rate, 0.0)

	all, err := status.Take(ctx, status.Source{Store: env.Store}, time.Minute)
	require.NoError(t, err)
	require.Nil(t, all.Census, "a staged run is not a census: pending is unknown")
	require.EqualValues(t, n, all.Total)
	_, err = env.Store.CensusTake(ctx)
	require.NoError(t, err)
	all, err = status.Take(ctx, status.Source{Store: env.Store}, time.Minute)
	require.NoError(t, err)
	require.EqualValues(t, 40, all.Total, "unscoped, after a census: the rest are pending")
	require.EqualValues(t, 40-n, all.States["pending"])
	require.EqualValues(t, 40-n, all.Legacy)
	require.Nil(t, all.Run)

	rest := env.MigrateWith(t, producer.Config{}) // every photo: its end is a census
	all, err = status.Take(ctx, status.Source{Store: env.Store}, time.Minute)
	require.NoError(t, err)
	require.Zero(t, all.States["pending"])
	require.Equal(t, "producer run "+rest.RunID, all.Census.Source)
	require.EqualValues(t, 40, all.Done)

	_, err = status.Take(ctx, status.Source{Store: env.Store, RunID: "run-unknown"}, time.Minute)
	require.ErrorIs(t, err, ledger.ErrRunNotFound)
}
