package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/worker"
)

// S1 (docs/soak-findings.md): two attempts hold one photo. Attempt B has
// copied and verified the photo's objects under its owner and waits right
// before its swap. Meanwhile the owner changes, attempt A (a duplicate
// delivery, on a second worker) re-plans for the new owner and discards B's
// uncommitted copies, which are not in its plan, and the owner is given back
// before A swaps. B's compare-and-swap then matches the row B read: it must
// not point the row at the copies A deleted. Every key the row points at must
// exist when the photo is first recorded migrated.
func TestSwapRefusesCopiesAnotherAttemptDiscarded(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	pool := b.env.Store.Pool()
	otherOwner := uuid.NewString()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	aDiscarded, release := make(chan struct{}), make(chan struct{})
	var missing []string
	var wg sync.WaitGroup
	// A waits after its first copy (its discard of B's copies is done by
	// then: planning discards what the plan no longer wants) with the owner
	// given back, until the photo is migrated.
	var onceA sync.Once
	hooksA := worker.Hooks{AfterCopy: func(hctx context.Context, id, _ string) (err error) {
		onceA.Do(func() {
			_, err = pool.Exec(hctx, `UPDATE photos SET owner_id=$2 WHERE id=$1`, id, f.Owner)
			close(aDiscarded)
			select {
			case <-release:
			case <-hctx.Done():
			}
		})
		return err
	}}
	ca := cfg()
	ca.Concurrency, ca.Drain = 1, false
	workerA := worker.SetHooks(b.worker(ca), hooksA)
	// The first time the photo is recorded migrated, every key its row
	// points at is read; then A is let go.
	watch := func() {
		defer close(release)
		for ctx.Err() == nil {
			l, ok, err := b.env.Store.PhotoMoveGet(ctx, f.ID)
			if err == nil && ok && l.State == ledger.StateMigrated {
				p := b.env.Photo(t, f.ID)
				for _, k := range []*string{&p.Original, p.Processed, p.Thumbnail} {
					if k == nil {
						continue
					}
					if _, err := b.env.Objects.Head(ctx, *k); err != nil {
						missing = append(missing, *k+": "+err.Error())
					}
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	var onceB sync.Once
	hooksB := worker.Hooks{BeforeSwap: func(hctx context.Context, photoID string) (err error) {
		onceB.Do(func() {
			if _, err = pool.Exec(hctx, `UPDATE photos SET owner_id=$2 WHERE id=$1`, photoID, otherOwner); err != nil {
				return
			}
			b.sendRaw(photoID, "run-1")
			wg.Add(2)
			go func() { defer wg.Done(); _ = workerA.Run(ctx) }()
			go func() { defer wg.Done(); watch() }()
			select {
			case <-aDiscarded:
			case <-hctx.Done():
				err = hctx.Err()
			}
		})
		return err
	}}
	cb := cfg()
	cb.Concurrency = 1
	b.send(f.ID, "run-1")
	b.drain(worker.SetHooks(b.worker(cb), hooksB))
	select {
	case <-release:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	require.Empty(t, missing, "when the photo was recorded migrated, its row pointed at keys that do not exist")
}
