package cleanup_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// migrated is a migrated bucket with legacy objects for cleanup to delete.
func migrated(t *testing.T, seedN uint64) *testenv.Env {
	env := testenv.New(t, testenv.Options{})
	env.Seed(t, seed.Options{Photos: 40, Seed: seedN, OwnerlessRate: 0.1})
	env.Migrate(t)
	return env
}

// during runs fn once, from inside the first page's deletions of the run o
// describes (its lease held), and returns that run's error.
func during(t *testing.T, env *testenv.Env, o cleanup.Options, fn func(ctx context.Context) error) error {
	var once sync.Once
	o = cleanup.WithHooks(o, cleanup.Hooks{BeforeDelete: func(ctx context.Context, _ []string) error {
		var err error
		once.Do(func() { err = fn(ctx) })
		return err
	}})
	_, err := cleanup.Run(context.Background(), env.Store, env.Objects, o)
	return err
}

// holder reads who holds a cleanup shard's lease ("" when nobody does).
func holder(t *testing.T, env *testenv.Env, shard, shards int) string {
	return ledgertest.PassShardOf(t, env.Store, ledger.PassCleanup, shard, shards).Holder
}

// Two processes on the same shard of the same pass (an operator's slip, a
// Kubernetes pod retried while the old one still runs): the second is
// refused, naming the holder and when its lease lapses; the first finishes
// and gives the lease up, and then the shard is anyone's.
func TestASecondProcessOnAHeldShardIsRefused(t *testing.T) {
	t.Parallel()
	env := migrated(t, 301)
	o := cleanup.Options{Grace: 0, Shard: 1, Shards: 2, Batch: 5, Holder: "pod-a"}
	var second error
	err := during(t, env, o, func(ctx context.Context) error {
		b := o
		b.Holder = "pod-b"
		_, second = cleanup.Run(ctx, env.Store, env.Objects, b)
		return nil
	})
	require.NoError(t, err)
	var held *ledger.LeaseHeldError
	require.ErrorAs(t, second, &held, "the second process on shard 1/2 must be refused")
	require.Equal(t, "pod-a", held.Holder)
	require.True(t, held.Until.After(held.Now))
	require.Contains(t, second.Error(), "held by pod-a until")
	require.Contains(t, second.Error(), "run this again after")
	require.Empty(t, holder(t, env, 1, 2), "the first process released the lease at its end")

	r, err := cleanup.Run(context.Background(), env.Store, env.Objects, cleanup.Options{Grace: 0, Shard: 1, Shards: 2, Holder: "pod-b"})
	require.NoError(t, err)
	require.True(t, r.AlreadyFinished, "released, the shard is pod-b's to look at: it finished")
}

// Different shards of a pass run at once: each holds its own lease.
func TestDifferentShardsRunTogether(t *testing.T) {
	t.Parallel()
	env := migrated(t, 302)
	o := cleanup.Options{Grace: 0, Shard: 0, Shards: 2, Batch: 5, Holder: "pod-0"}
	var other *cleanup.Report
	var otherErr error
	err := during(t, env, o, func(ctx context.Context) error {
		b := o
		b.Shard, b.Holder = 1, "pod-1"
		other, otherErr = cleanup.Run(ctx, env.Store, env.Objects, b)
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, otherErr)
	require.True(t, other.Finished)
	require.Positive(t, other.Deleted)
}

// A holder that died leaves its lease to lapse: the next process takes the
// shard over (and says whose it was), from its cursor.
func TestALapsedLeaseIsTakenOver(t *testing.T) {
	t.Parallel()
	env := migrated(t, 303)
	ctx := context.Background()
	o := cleanup.Options{Grace: 0, Shard: 0, Shards: 1, Holder: "dead-pod"}
	cur, err := env.Store.PassCursorJoin(ctx, ledger.PassCleanup, cleanup.Scope(o), 0, 1)
	require.NoError(t, err)
	_, err = env.Store.PassLeaseTake(ctx, cur, "dead-pod", time.Minute)
	require.NoError(t, err)
	o.Holder = "new-pod"
	_, err = cleanup.Run(ctx, env.Store, env.Objects, o)
	var held *ledger.LeaseHeldError
	require.ErrorAs(t, err, &held, "the lease still holds")
	require.Equal(t, "dead-pod", held.Holder)

	// The minute passes without a renewal (set, not slept: a loaded machine
	// must not make the lease lapse before the refusal above, nor the test
	// wait a minute).
	ledgertest.LapseLeases(t, env.Store, ledger.PassCleanup)
	r, err := cleanup.Run(ctx, env.Store, env.Objects, o)
	require.NoError(t, err, "the lapsed lease is taken over")
	require.Equal(t, "dead-pod", r.TookOverFrom)
	require.True(t, r.Finished)
	require.Positive(t, r.Deleted)
	require.Empty(t, holder(t, env, 0, 1))
}

// A process whose lease was taken over (it lapsed while the process was
// stalled) stops: its cursor is not moved, so no page is counted twice.
func TestAProcessThatLostItsLeaseStops(t *testing.T) {
	t.Parallel()
	env := migrated(t, 304)
	o := cleanup.Options{Grace: 0, Shard: 0, Shards: 1, Batch: 5, Holder: "stalled-pod"}
	err := during(t, env, o, func(context.Context) error {
		ledgertest.HandLeasesTo(t, env.Store, ledger.PassCleanup, "new-pod", time.Minute)
		return nil
	})
	require.True(t, errors.Is(err, ledger.ErrLeaseLost), "got %v", err)
	require.Equal(t, "new-pod", holder(t, env, 0, 1), "the loser does not release the new holder's lease")
	require.Nil(t, ledgertest.PassShardOf(t, env.Store, ledger.PassCleanup, 0, 1).Cursor, "the cursor did not move")
}

// A shard whose lease a killed process of this host holds is taken over at
// once by the next run with the default holder (an operator runs it again
// after a kill: no wait for the lease to lapse); one a live process of this
// host holds is still refused.
func TestALeaseOfAProcessGoneFromThisHostIsTakenOverAtOnce(t *testing.T) {
	t.Parallel()
	env := migrated(t, 305)
	ctx := context.Background()
	host, err := os.Hostname()
	require.NoError(t, err)
	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	live := exec.Command("sleep", "60")
	require.NoError(t, live.Start())
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })

	o := cleanup.Options{Grace: 0, Shard: 0, Shards: 1}
	cur, err := env.Store.PassCursorJoin(ctx, ledger.PassCleanup, cleanup.Scope(o), 0, 1)
	require.NoError(t, err)
	liveHolder := fmt.Sprintf("%s/pid %d/live", host, live.Process.Pid)
	_, err = env.Store.PassLeaseTake(ctx, cur, liveHolder, time.Minute)
	require.NoError(t, err)
	_, err = cleanup.Run(ctx, env.Store, env.Objects, o)
	var held *ledger.LeaseHeldError
	require.ErrorAs(t, err, &held, "a live process of this host holds the shard")
	require.Equal(t, liveHolder, held.Holder)

	ledgertest.LapseLeases(t, env.Store, ledger.PassCleanup) // let the live one go
	goneHolder := fmt.Sprintf("%s/pid %d/gone", host, gone.ProcessState.Pid())
	_, err = env.Store.PassLeaseTake(ctx, cur, goneHolder, time.Minute)
	require.NoError(t, err)
	r, err := cleanup.Run(ctx, env.Store, env.Objects, o)
	require.NoError(t, err, "the lease of a process gone from this host is taken over at once")
	require.Equal(t, goneHolder, r.TookOverFrom)
	require.True(t, r.Finished)
	require.Positive(t, r.Deleted)
}
