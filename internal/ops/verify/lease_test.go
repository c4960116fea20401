package verify_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// migratedClean is a migrated bucket with nothing wrong, and the new key of
// the original of one of its owned photos (a key its row references).
func migratedClean(t *testing.T, photos int, seedN uint64) (*testenv.Env, string) {
	env := testenv.New(t, testenv.Options{})
	opts := seed.Options{Photos: photos, Seed: seedN, OwnerlessRate: 0.05}
	env.Seed(t, opts)
	env.Migrate(t)
	for _, p := range seed.Generate(opts) {
		if p.OwnerID == nil {
			continue
		}
		l, err := keylayout.ParseLegacy(p.Original)
		require.NoError(t, err)
		k, err := l.UserScoped(*p.OwnerID, p.ID)
		require.NoError(t, err)
		return env, k
	}
	t.Fatal("no owned photo seeded")
	return nil, ""
}

// paused is a verify.Run started in the background that stops before it
// records its first page of phase, until released.
type paused struct {
	at      chan struct{} // closed when it reached the page
	release chan struct{}
	done    chan struct{}
	r       *verify.Report
	err     error
}

func startPaused(env *testenv.Env, o verify.Options, phase string) *paused {
	p := &paused{at: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
	var once sync.Once
	o = verify.WithHooks(o, verify.Hooks{BeforeSave: func(ctx context.Context, ph string) error {
		if ph == phase {
			// Every page of the phase waits (its ranges are listed in
			// parallel) until the first one is released.
			once.Do(func() { close(p.at); <-p.release })
		}
		return nil
	}})
	go func() {
		defer close(p.done)
		p.r, p.err = verify.Run(context.Background(), env.Store, env.Objects, o)
	}()
	return p
}

func (p *paused) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.at:
	case <-p.done:
		require.FailNow(t, "verify ended before it reached the page", "err %v", p.err)
	}
}

func (p *paused) finish() (*verify.Report, error) {
	close(p.release)
	<-p.done
	return p.r, p.err
}

// A slow verify process still runs a shard when the operator checks again
// from the start (--restart) after a change: the pass's verdict must be the
// new run's. A process of the forgotten pass that kept running must not
// finish the new pass with what it saw before the change (here: a copy a row
// references, deleted after the old process had checked the rows; the gate
// would pass on a stale check).
func TestAStaleProcessDoesNotDecideTheVerdictOfARestartedPass(t *testing.T) {
	t.Parallel()
	env, victim := migratedClean(t, 40, 611)
	ctx := context.Background()
	o := verify.Options{MaxProblems: 1000, Resume: true}

	old := startPaused(env, o, "legacy")
	old.wait(t) // it has checked the moved objects and the rows: all fine

	require.NoError(t, env.Objects.Delete(ctx, victim))
	require.NoError(t, verify.ResetPass(ctx, env.Store, o))
	fresh := startPaused(env, o, "legacy")
	fresh.wait(t) // it has found the missing copy

	oldR, oldErr := old.finish()
	freshR, freshErr := fresh.finish()
	require.NoError(t, freshErr)
	require.False(t, freshR.OK(), "the restarted pass sees the missing copy")
	require.ErrorIs(t, oldErr, ledger.ErrLeaseLost, "the old process stops: the restarted pass's shard is another's")
	require.True(t, oldR.OK(), "the old process checked before the damage")

	u, _, err := verify.Union(ctx, env.Store, o)
	require.NoError(t, err)
	require.False(t, u.OK(), "the gate passed on the old process's check made before the copy went missing")
	require.Equal(t, comparable(t, freshR), comparable(t, u), "the pass's verdict is the restarted run's")
}

// holder reads who holds a verify shard's lease ("" when nobody does).
func holder(t *testing.T, env *testenv.Env, shard, shards int) string {
	return ledgertest.PassShardOf(t, env.Store, ledger.PassVerify, shard, shards).Holder
}

// Two processes on the same shard of the same pass (a retried pod of the
// Indexed Job beside a slow one, an operator's slip): the second is refused,
// naming the holder and when its lease lapses, and checks nothing; the first
// finishes and gives the lease up, and then the shard is anyone's.
func TestASecondVerifyOnAHeldShardIsRefused(t *testing.T) {
	t.Parallel()
	env, _ := migratedClean(t, 30, 612)
	ctx := context.Background()
	o := verify.Options{MaxProblems: 1000, Resume: true, Shard: 1, Shards: 2, Holder: "pod-a"}
	first := startPaused(env, o, "rows")
	first.wait(t)

	b := o
	b.Holder = "pod-b"
	r, err := verify.Run(ctx, env.Store, env.Objects, b)
	var held *ledger.LeaseHeldError
	require.ErrorAs(t, err, &held, "the second process on shard 1/2 must be refused")
	require.Equal(t, "pod-a", held.Holder)
	require.True(t, held.Until.After(held.Now))
	require.Contains(t, err.Error(), "verify shard 1/2 of pass")
	require.Contains(t, err.Error(), "held by pod-a until")
	require.Zero(t, r.Heads, "the refused process checks nothing")

	fr, err := first.finish()
	require.NoError(t, err)
	require.True(t, fr.OK())
	require.Empty(t, holder(t, env, 1, 2), "the first process released the lease at its end")
	again, err := verify.Run(ctx, env.Store, env.Objects, b)
	require.NoError(t, err)
	require.True(t, again.AlreadyDone, "released, the shard is pod-b's to look at: it finished")
	require.Equal(t, fr.RowsChecked, again.RowsChecked)
}

// A holder that died leaves its lease to lapse: the next process takes the
// shard over (and says whose it was) from its cursor, and the pass's verdict
// is the one an uninterrupted run gives.
func TestALapsedVerifyLeaseIsTakenOver(t *testing.T) {
	t.Parallel()
	env := damagedMigration(t, 60)
	ctx := context.Background()
	whole, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{MaxProblems: 1000})
	require.NoError(t, err)

	// The dead process recorded its objects phase, then died in the rows
	// phase with its lease still held.
	o := verify.Options{MaxProblems: 1000, Resume: true, Holder: "dead-pod"}
	dead := startPaused(env, o, "rows")
	dead.wait(t)
	ledgertest.HandLeasesTo(t, env.Store, ledger.PassVerify, "dead-pod", time.Minute) // as if it never released it
	o.Holder = "new-pod"
	_, err = verify.Run(ctx, env.Store, env.Objects, o)
	var held *ledger.LeaseHeldError
	require.ErrorAs(t, err, &held, "the lease still holds")
	require.Equal(t, "dead-pod", held.Holder)

	// The minute passes without a renewal (set, not slept).
	ledgertest.LapseLeases(t, env.Store, ledger.PassVerify)
	r, err := verify.Run(ctx, env.Store, env.Objects, o)
	require.NoError(t, err, "the lapsed lease is taken over")
	require.Equal(t, "dead-pod", r.TookOverFrom)
	require.True(t, r.Resumed, "from the dead process's cursor")
	require.Equal(t, comparable(t, whole), comparable(t, r))
	require.Empty(t, holder(t, env, 0, 1))

	_, deadErr := dead.finish() // the "dead" one wakes up: it lost the shard
	require.ErrorIs(t, deadErr, ledger.ErrLeaseLost)
	u, _, err := verify.Union(ctx, env.Store, o)
	require.NoError(t, err)
	require.Equal(t, comparable(t, whole), comparable(t, u), "its late pages changed nothing")
}
