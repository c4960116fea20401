package appsim_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
)

// Without a migration running, the application's own reads must all find
// what it wrote: the simulator's model and judgement produce no false alarm.
func TestSimulatorAloneSeesNoBadRead(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	svc, err := storage.New(env.S3, env.Objects.Bucket(), storage.Options{})
	require.NoError(t, err)
	sim := appsim.New(appsim.Config{Seed: 7, ReadRate: 60, WriteRate: 25, ListOneIn: 5}, appsim.Deps{Pool: env.Store.Pool(), Storage: svc, Objects: env.Objects})
	ctx := context.Background()
	require.NoError(t, sim.Populate(ctx, appsim.PopulateOptions{Photos: 60, Problems: 1}))
	sim.Start(ctx)
	time.Sleep(8 * time.Second)
	sim.Stop()
	for _, id := range sim.Model().IDs() {
		sim.ReadPhoto(ctx, id, true)
	}
	s := sim.Stats().Summary()
	t.Logf("ops %+v notes %v reads %v final %v retried %d latency %+v", s.Ops, s.Notes, s.Reads, s.Final, s.Retried, s.Latency)
	require.Empty(t, s.BadReads)
	require.Greater(t, s.TotalReads(), int64(100))
	for op, c := range s.Ops {
		require.Zero(t, c.Failed, "%s: %s", op, c.LastErr)
	}
	require.Positive(t, s.Ops[appsim.OpCreate].Done)
	require.Positive(t, s.Ops[appsim.OpRewriteLegacy].Done)
	require.Positive(t, s.Ops[appsim.OpRemoveOwner].Done)
	require.Positive(t, s.Ops[appsim.OpAddAnimation].Done)
	require.Positive(t, s.Notes["read_through_a_presigned_url"], "part of the reads go through presigned URLs")
	require.Positive(t, s.Notes["listing_read"], "part of the reads list a user's photos")
}
