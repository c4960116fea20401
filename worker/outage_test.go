package worker_test

// Issue 9, cases 8 and 9: an outage is not a failure of the photo, a message
// the worker hands back for its own reasons does not eat the receive budget,
// and photos whose messages were lost are found and enqueued again.

import (
	"context"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/worker"
)

// outageCfg is a worker that gives up on a transient failure fast and hands
// messages back after a second: without outage handling it would burn a
// small receive budget within seconds.
func outageCfg() worker.Config {
	c := cfg()
	c.Drain = false
	c.RetryMaxElapsed = 300 * time.Millisecond
	c.ReleaseBase = time.Second
	c.ReleaseMax = 2 * time.Second
	c.DependencyProbe = 500 * time.Millisecond
	c.ControlInterval = 500 * time.Millisecond
	return c
}

// runUntil runs w until cond holds (or a minute passes), then stops it.
func (b *testBundle) runUntil(w *worker.Worker, cond func() bool) {
	b.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	require.NoError(b.t, <-done)
	require.True(b.t, cond(), "the condition did not hold within a minute")
}

func (b *testBundle) migratedCount() int {
	return ledgertest.PhotoMovesIn(b.t, b.env.Store, "migrated")
}

// Case 8: S3 down for several release cycles. The worker stops taking
// messages instead of burning their receives; nothing is dead-lettered, and
// everything is migrated once S3 is back.
func TestS3OutageDeadLettersNothing(t *testing.T) {
	b := setup(t, testenv.Options{MaxReceiveCount: 2})
	for range 4 {
		b.send(b.legacyPhoto().ID, "run-1")
	}
	upstream, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	require.NoError(t, err)
	cut := testenv.NewCuttable(t, upstream.Host)
	client := s3.NewFromConfig(b.env.AWS, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(cut.URL(t, upstream.String()))
		o.UsePathStyle = true
		o.RetryMaxAttempts = 1
	})
	objects := objstore.New(client, b.env.Objects.Bucket(), objstore.Options{})
	// The fleet already knows the server (no probe through the cut).
	_, err = objects.ResolveDestinationCheck(context.Background())
	require.NoError(t, err)
	w := b.workerWith(objects, outageCfg())

	cut.Cut()
	var once sync.Once
	start := time.Now()
	b.runUntil(w, func() bool {
		if time.Since(start) > 12*time.Second {
			once.Do(cut.Restore)
		}
		return b.migratedCount() == 4
	})
	require.Empty(t, b.dlqMessages(), "an outage dead-letters nothing")
	require.Zero(t, ledgertest.Count(ledgertest.Failures(t, b.env.Store), func(f ledgertest.Failure) bool { return f.Permanent }))
}

// Case 8: Postgres down (a failover) for several release cycles: the same.
func TestPostgresOutageDeadLettersNothing(t *testing.T) {
	b := setup(t, testenv.Options{MaxReceiveCount: 2})
	var photos []fixture
	for range 4 {
		photos = append(photos, b.legacyPhoto())
	}
	u, err := url.Parse(b.env.DatabaseURL)
	require.NoError(t, err)
	cut := testenv.NewCuttable(t, u.Host)
	st, err := ledger.Open(context.Background(), cut.URL(t, b.env.DatabaseURL), 8)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	w := worker.New(st, b.env.Objects, b.env.Queue, b.env.DLQ, b.log, outageCfg())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	// Cut only once the worker has started (its heartbeat is the first
	// write after start-up's reads): a worker that cannot reach Postgres at
	// start exits, which is not the case under test. A fixed sleep here was
	// too short on a loaded machine.
	startBy := time.Now().Add(30 * time.Second)
	for ledgertest.Rows(t, b.env.Store, ledgertest.TallyWorkers) == 0 {
		require.True(t, time.Now().Before(startBy), "the worker did not start within 30s")
		time.Sleep(50 * time.Millisecond)
	}
	cut.Cut()
	for _, f := range photos {
		b.send(f.ID, "run-1")
	}
	time.Sleep(12 * time.Second)
	cut.Restore()
	deadline := time.Now().Add(time.Minute)
	for b.migratedCount() < 4 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, 4, b.migratedCount())
	require.Empty(t, b.dlqMessages(), "an outage dead-letters nothing")
}

// Case 8 and 9: messages a worker hands back for its own reasons (a hard stop,
// a pause, scale-in) do not eat the receive budget real failures need, and
// the photo is back to enqueued, not in_progress, while no worker holds it.
func TestOwnReleasesDoNotEatTheReceiveBudget(t *testing.T) {
	b := setup(t, testenv.Options{MaxReceiveCount: 2})
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	for range 3 {
		c := cfg()
		c.Drain = false
		c.ShutdownGrace = 200 * time.Millisecond
		held := make(chan struct{})
		var once sync.Once
		hooks := worker.Hooks{BeforeLoad: func(ctx context.Context, photoID string) error {
			once.Do(func() { close(held) })
			<-ctx.Done() // held until the hard stop
			return ctx.Err()
		}}
		w := worker.SetHooks(b.worker(c), hooks)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		select {
		case <-held:
		case <-time.After(30 * time.Second):
			t.Fatal("the message was not delivered again after a release")
		}
		cancel()
		require.NoError(t, <-done)
		require.Equal(t, 1, b.photoMovesOf(f.ID, "enqueued"),
			"a released photo is enqueued, not in progress")
	}
	b.drain(b.worker(cfg()))
	b.requireMigrated(f)
	require.Empty(t, b.dlqMessages())
}

// Case 9: messages lost by the queue (an SQS outage, a queue recreated) are
// found: a sweeper re-enqueues photos the ledger has enqueued for too long
// while the queue holds nothing, and the fleet migrates them.
func TestLostMessagesAreFoundAndEnqueuedAgain(t *testing.T) {
	b := setup(t, testenv.Options{})
	var ids []string
	for range 5 {
		f := b.legacyPhoto()
		ids = append(ids, f.ID)
		b.send(f.ID, "run-1")
	}
	require.Equal(t, len(ids), b.env.LoseMessages(t))
	c := cfg()
	c.SweepInterval = 500 * time.Millisecond
	c.SweepAfter = time.Second
	b.drain(b.worker(c))
	require.Equal(t, 5, b.migratedCount(), "the lost photos were found and migrated")
	require.Equal(t, 5, ledgertest.Count(ledgertest.PhotoMoves(t, b.env.Store), func(m ledgertest.PhotoMove) bool { return m.Rescued > 0 }))
}

// Case 8: a row the application keeps locked does not hold a worker: with
// lock_timeout on its sessions the swap fails fast and is retried, and the
// photo is migrated once the lock is gone.
func TestARowLockedByTheApplicationDoesNotHoldTheWorker(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	f := b.legacyPhoto()
	st, err := ledger.OpenWith(ctx, b.env.DatabaseURL, ledger.Options{MaxConns: 8, LockTimeout: 500 * time.Millisecond, StatementTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)

	// The application holds the row in a long transaction.
	tx, err := b.env.Store.Pool().Begin(ctx)
	require.NoError(t, err)
	var release sync.Once
	unlock := func() { release.Do(func() { _ = tx.Rollback(ctx) }) }
	t.Cleanup(unlock)
	_, err = tx.Exec(ctx, `SELECT 1 FROM photos WHERE id = $1 FOR UPDATE`, f.ID)
	require.NoError(t, err)
	c := cfg()
	c.RetryMaxElapsed = time.Second
	c.ReleaseBase, c.ReleaseMax = time.Second, time.Second
	b.send(f.ID, "run-1")
	w := worker.New(st, b.env.Objects, b.env.Queue, b.env.DLQ, b.log, c)
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	require.Eventually(t, func() bool {
		return ledgertest.Count(ledgertest.Failures(t, b.env.Store), func(r ledgertest.Failure) bool {
			return r.PhotoID == f.ID && strings.Contains(r.Error, "lock timeout")
		}) > 0

	}, 15*time.Second, 200*time.Millisecond, "the worker's swap gave up waiting for the lock")
	unlock()
	require.NoError(t, <-done)
	b.requireMigrated(f)
}
