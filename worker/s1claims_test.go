package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/worker"
)

// missingWhenFirstMigrated polls the ledger until photoID is first recorded
// migrated, then HEADs every key its row points at and returns those that do
// not exist (with the error). It returns nil if ctx ends first.
func (b *testBundle) missingWhenFirstMigrated(ctx context.Context, photoID string) []string {
	for ctx.Err() == nil {
		l, ok, err := b.env.Store.PhotoMoveGet(ctx, photoID)
		if err == nil && ok && l.State == ledger.StateMigrated {
			var missing []string
			p := b.env.Photo(b.t, photoID)
			for _, k := range []*string{&p.Original, p.Processed, p.Thumbnail} {
				if k == nil {
					continue
				}
				if _, err := b.env.Objects.Head(ctx, *k); err != nil {
					missing = append(missing, *k+": "+err.Error())
				}
			}
			return missing
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// S1 by the archive path (docs/soak-findings.md): attempt B has copied and
// verified the photo under its owner and waits before its swap. The owner is
// removed; attempt A (a duplicate delivery on a second worker) archives the
// photo and discards B's uncommitted copies; the operator's `archived
// assign` gives the same owner back. B's compare-and-swap then matches the
// row it read: it must not point the row at the copies A deleted.
func TestSwapRefusesCopiesDiscardedByAnArchive(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	pool, st := b.env.Store.Pool(), b.env.Store
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ca := cfg()
	ca.Concurrency, ca.Drain = 1, false
	workerA := b.worker(ca)
	var wg sync.WaitGroup
	var missing []string
	watched := make(chan struct{})
	var onceB sync.Once
	hooksB := worker.Hooks{BeforeSwap: func(hctx context.Context, photoID string) (err error) {
		onceB.Do(func() {
			if _, err = pool.Exec(hctx, `UPDATE photos SET owner_id = NULL WHERE id=$1`, photoID); err != nil {
				return
			}
			b.sendRaw(photoID, "run-1")
			actx, stopA := context.WithCancel(ctx)
			defer stopA()
			wg.Add(1)
			go func() { defer wg.Done(); _ = workerA.Run(actx) }()
			// A is done when the photo is archived and none of its
			// copies is open any more.
			for hctx.Err() == nil {
				l, ok, lerr := st.PhotoMoveGet(hctx, photoID)
				open, oerr := st.ObjectMoveListOpen(hctx, photoID)
				if lerr == nil && oerr == nil && ok && l.State == ledger.StateArchived && len(open) == 0 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			stopA()
			cands, cerr := st.PhotoAssignCandidates(hctx, []string{photoID})
			if err = cerr; err != nil {
				return
			}
			c := cands[photoID]
			var ok bool
			ok, err = st.PhotoAssignOwner(hctx, ledger.AssignInput{
				PhotoID: photoID, OwnerID: f.Owner, RunID: "assign-1", By: "test", Source: "test",
				OldStatus: c.OldStatus, Keys: c.Photo.Keys,
			})
			if err == nil && !ok {
				t.Error("the assignment found the row changed")
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer close(watched); missing = b.missingWhenFirstMigrated(ctx, photoID) }()
		})
		return err
	}}
	cb := cfg()
	cb.Concurrency = 1
	b.send(f.ID, "run-1")
	b.drain(worker.SetHooks(b.worker(cb), hooksB))
	select {
	case <-watched:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	require.Empty(t, missing, "when the photo was recorded migrated, its row pointed at keys that do not exist")
	b.requireMigrated(f)
}

// claimUnsettled leaves what a discard that claimed f's original copy and
// then died (or whose delete failed) leaves: an intent with the copy's ETag,
// the copy itself, and a claim never settled. It returns the copy's key and
// ETag.
func (b *testBundle) claimUnsettled(ctx context.Context, f fixture, owner string) (string, string) {
	t := b.t
	st := b.env.Store
	newKey := keylayout.OriginalKey(owner, f.ID, "png")
	_, err := st.ObjectMoveRecordIntents(ctx, f.ID, f.Job, []ledger.Intent{{Kind: string(keylayout.KindOriginal), OldKey: f.Original, NewKey: newKey}})
	require.NoError(t, err)
	b.env.Put(t, newKey, f.Bodies[f.Original], "image/png", map[string]string{"camera": "x100v"})
	dst, err := b.env.Objects.Head(ctx, newKey)
	require.NoError(t, err)
	src, err := b.env.Objects.Head(ctx, f.Original)
	require.NoError(t, err)
	require.NoError(t, st.ObjectMoveRecordCopies(ctx, f.ID, []ledger.ObjectMove{{
		Kind: string(keylayout.KindOriginal), OldKey: f.Original, NewKey: newKey, Size: src.Size,
		SourceETag: src.ETag, ETag: dst.ETag, ContentType: "image/png",
	}}))
	claimed, busy, err := st.ObjectMoveClaimDiscards(ctx, []ledger.DiscardClaim{{NewKey: newKey, ETag: dst.ETag}}, time.Minute)
	require.NoError(t, err)
	require.Empty(t, busy)
	require.Len(t, claimed, 1)
	return newKey, dst.ETag
}

// The window the prototype of the S1 fix left open: a discard claimed a copy
// and its delete is in flight (here: a deleter that claimed and is slow,
// its request landing later) when the next attempt plans the same key. The
// attempt must not take the copy as its own while the claim is younger than
// the takeover bound (it retries later, committing nothing); after the bound
// it takes the discard over (conditional delete, settled) and migrates the
// photo with every key present. Enough receives that the attempts before the
// bound (about one a second) cannot use them all up: with the default five,
// the fifth came 0.1 s before the bound in a CI run on MinIO, and the photo
// was dead-lettered instead of migrated.
func TestAnUnsettledDiscardIsNotReopenedUntilTakenOver(t *testing.T) {
	b := setup(t, testenv.Options{MaxReceiveCount: 20})
	f := b.legacyPhoto()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const bound = 6 * time.Second
	newKey, etag := b.claimUnsettled(ctx, f, f.Owner)
	claimedAt := time.Now()

	c := cfg()
	c.Drain = false
	c.DiscardTakeover = bound
	c.ReleaseBase, c.ReleaseMax = time.Second, time.Second
	b.send(f.ID, "run-1")
	var wg sync.WaitGroup
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	wg.Add(1)
	go func() { defer wg.Done(); _ = b.worker(c).Run(wctx) }()
	var missing []string
	watched := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); defer close(watched); missing = b.missingWhenFirstMigrated(wctx, f.ID) }()

	// The slow deleter's request lands, well within the bound.
	time.Sleep(time.Until(claimedAt.Add(bound / 2)))
	require.NoError(t, b.env.Objects.DeleteIf(ctx, newKey, etag))
	require.Equal(t, f.Original, b.env.Photo(t, f.ID).Original, "nothing may be committed over a discard in flight")

	select {
	case <-watched:
	case <-ctx.Done():
	}
	stop()
	wg.Wait()
	require.Empty(t, missing, "when the photo was recorded migrated, its row pointed at keys that do not exist")
	require.GreaterOrEqual(t, time.Since(claimedAt), bound, "migrated before the claim could be taken over")
	b.requireMigrated(f)
	o, ok, err := b.env.Store.ObjectMoveGetCopy(ctx, newKey)
	require.NoError(t, err)
	require.True(t, ok)
	require.Nil(t, o.DiscardingAt, "the claim was settled")
	require.Equal(t, int64(2), o.DiscardGen, "taken over once, by a claim of its own")
}

// A claimed discard whose delete failed (or whose deleter died before
// deleting) is completed by a later attempt once the claim is older than the
// bound: here the application deleted the photo, and nothing keymigrate
// copied stays under users/.
func TestADiscardLeftUnsettledIsCompletedLater(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	newKey, _ := b.claimUnsettled(ctx, f, f.Owner)
	b.send(f.ID, "run-1")
	_, err := b.env.Store.Pool().Exec(ctx, `DELETE FROM photos WHERE id=$1`, f.ID)
	require.NoError(t, err)

	c := cfg()
	c.Drain = false
	c.DiscardTakeover = 3 * time.Second
	c.ReleaseBase, c.ReleaseMax = time.Second, time.Second
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); _ = b.worker(c).Run(wctx) }()
	for ctx.Err() == nil && b.photoMovesOf(f.ID, string(ledger.StateDeleted)) == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	<-done
	require.Equal(t, 1, b.photoMovesOf(f.ID, string(ledger.StateDeleted)), "the photo was recorded deleted")
	require.Empty(t, b.usersKeys(), "the copy whose discard was left unsettled is gone")
	_, ok, err := b.env.Store.ObjectMoveGetCopy(ctx, newKey)
	require.NoError(t, err)
	require.False(t, ok, "its discard is settled")
}
