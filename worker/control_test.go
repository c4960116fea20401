package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/producer"
	"github.com/keymigrate/keymigrate/worker"
)

// fleet runs n workers until stop is called.
func (b *testBundle) fleet(n int, c worker.Config) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(b.t, b.worker(c).Run(ctx)) }()
	}
	return func() { cancel(); wg.Wait() }
}

func (b *testBundle) started(since time.Time) int {
	return ledgertest.Count(ledgertest.PhotoMoves(b.t, b.env.Store), func(m ledgertest.PhotoMove) bool {
		return m.StartedAt != nil && m.StartedAt.After(since)
	})
}

func (b *testBundle) finished() int {
	return ledgertest.PhotoMovesIn(b.t, b.env.Store, "migrated", "archived")

}

func TestPauseStopsTheFleetWithinFiveSecondsAndResumeRestartsIt(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	b.env.Seed(t, seed.Options{Photos: 400, Seed: 61})
	_, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{}).Run(ctx)
	require.NoError(t, err)
	c := cfg()
	c.Drain = false
	c.Concurrency = 2
	c.WaitTime = 20 * time.Second // the longest poll: pause must still hold within 5s
	stop := b.fleet(2, c)
	defer stop()
	require.Eventually(t, func() bool { return b.finished() >= 20 }, time.Minute, 100*time.Millisecond)

	require.NoError(t, b.env.Store.ControlSetPaused(ctx, true, "test"))
	pausedAt := time.Now()
	time.Sleep(5 * time.Second)
	settled := time.Now()
	d, err := b.env.Queue.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, d.InFlight, "paused workers hold no message")
	time.Sleep(3 * time.Second)
	require.Zero(t, b.started(settled), "no photo started after the pause settled (paused at %s)", pausedAt)
	left := b.finished()
	require.Less(t, left, 400)

	require.NoError(t, b.env.Store.ControlSetPaused(ctx, false, "test"))
	require.Eventually(t, func() bool { return b.finished() > left }, 10*time.Second, 100*time.Millisecond, "resume restarts the fleet")
}

func TestThrottleHoldsTheFleetRate(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	b.env.Seed(t, seed.Options{Photos: 700, Seed: 62})
	_, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{}).Run(ctx)
	require.NoError(t, err)
	const target = 8.0 // photos/s for the whole fleet
	rate := target
	require.NoError(t, b.env.Store.ControlSetRateLimit(ctx, &rate, "test"))
	c := cfg()
	c.Drain = false
	c.ControlInterval = time.Second
	stop := b.fleet(3, c)
	defer stop()

	time.Sleep(4 * time.Second) // every worker has seen its share
	from := b.finished()
	window := 45 * time.Second
	time.Sleep(window)
	got := float64(b.finished()-from) / window.Seconds()
	require.InDelta(t, target, got, target*0.2, "fleet rate %.2f photos/s, target %.0f", got, target)

	require.NoError(t, b.env.Store.ControlSetRateLimit(ctx, nil, "test"))
	from = b.finished()
	time.Sleep(5 * time.Second)
	require.Greater(t, float64(b.finished()-from)/5, target*2, "lifting the throttle speeds the fleet up")
}
