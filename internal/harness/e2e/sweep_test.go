package e2e_test

import (
	"context"
	"time"

	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// TestSweepFindsLostMessagesWithNoWorkerRunning is the fleet at zero replicas
// (KEDA's scale to zero): no worker runs, so no worker sweeps, and the
// CronJob's `migratectl sweep` alone must find the photos whose messages were
// lost, and leave alone photos that wait behind messages or are recent.
func TestSweepFindsLostMessagesWithNoWorkerRunning(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	const after = "3s"
	wait := 3500 * time.Millisecond
	sweep := func() string { return b.run("migratectl", "sweep", "--sweep-after", after) }
	depth := func() int64 {
		d, err := b.env.Queue.Depth(ctx)
		require.NoError(t, err)
		return d.Total()
	}
	lose := func() { require.Equal(t, 12, b.env.LoseMessages(t)) }

	// The queue has been empty for longer than --sweep-after (the clock is
	// recorded in the ledger by a pass, as the CronJob's earlier runs do).
	require.Contains(t, sweep(), "less than --sweep-after")
	time.Sleep(wait)

	// Photos are enqueued, and their messages lost at once: the ledger says
	// enqueued, the queue is empty, but the photos are recent.
	b.env.Seed(t, seed.Options{Photos: 12, Seed: 5})
	require.Contains(t, b.run("producer"), "enqueued 12")
	lose()
	out := sweep()
	require.Contains(t, out, "nothing enqueued", "recent photos are not presumed lost")
	require.Zero(t, depth())

	// Older than --sweep-after with the queue still empty: found.
	time.Sleep(wait)
	out = sweep()
	require.Contains(t, out, "enqueued again 12 photos")
	require.EqualValues(t, 12, depth())

	// While the queue holds messages, a pass does nothing, however old the
	// photos: they wait behind a backlog.
	time.Sleep(wait)
	out = sweep()
	require.Contains(t, out, "the queue holds 12 messages")
	require.EqualValues(t, 12, depth(), "no duplicates while the queue holds messages")

	// The messages the sweep sent are ordinary messages: the fleet, once
	// scaled up, migrates every photo.
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	require.Equal(t, 12, ledgertest.PhotoMovesIn(t, b.env.Store, "migrated"))
	require.Contains(t, b.run("migratectl", "verify"), "verify: OK")
}
