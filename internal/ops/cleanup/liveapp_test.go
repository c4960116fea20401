package cleanup_test

// Issue 9: cleanup beside a live application. Legacy objects are shared
// between rows; rows are rolled back, inserted and deleted while cleanup runs.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// job is one legacy job's objects.
type job struct {
	ID                                         string
	Original, Processed, Thumbnail, Meta, Anim string
}

func (j job) keys() []string { return []string{j.Original, j.Processed, j.Thumbnail, j.Meta, j.Anim} }

func newJob(t *testing.T, env *testenv.Env) job {
	t.Helper()
	j := job{ID: uuid.NewString()}
	j.Original = "uploaded/" + j.ID + ".jpg"
	j.Processed = "restored/" + j.ID + "/" + uuid.NewString() + ".jpg"
	j.Thumbnail = "thumbnails/" + j.ID + ".jpg"
	j.Meta = "meta/" + j.ID + ".json"
	j.Anim = "animated/" + j.ID + "/" + uuid.NewString() + "_loop.mp4"
	for _, k := range j.keys() {
		env.Put(t, k, []byte("bytes of "+k), "application/octet-stream", nil)
	}
	return j
}

// row inserts a photos row referencing j's legacy keys (owner nil: ownerless).
func row(t *testing.T, env *testenv.Env, j job, owner *string) string {
	t.Helper()
	id := uuid.NewString()
	env.InsertPhoto(t, id, owner, j.Original, &j.Processed, &j.Thumbnail)
	return id
}

func exists(t *testing.T, env *testenv.Env, key string) bool {
	t.Helper()
	ok, err := env.Objects.Exists(context.Background(), key)
	require.NoError(t, err)
	return ok
}

func requireKept(t *testing.T, env *testenv.Env, j job, why string) {
	t.Helper()
	for _, k := range j.keys() {
		require.True(t, exists(t, env, k), "%s: %s was deleted", why, k)
	}
}

func requireGone(t *testing.T, env *testenv.Env, j job, why string) {
	t.Helper()
	for _, k := range j.keys() {
		require.False(t, exists(t, env, k), "%s: %s was kept", why, k)
	}
}

func owner() *string { o := uuid.NewString(); return &o }

// Case 1: a legacy object referenced or derived by more than one row is
// deleted only when every one of those rows is migrated with its own verified
// copy; archived rows' and not-yet-migrated rows' objects stay.
func TestCleanupKeepsLegacyObjectsAnotherRowStillNeeds(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()

	archivedCopy := newJob(t, env) // an owned photo and an ownerless copy (archived)
	row(t, env, archivedCopy, owner())
	ownerless := row(t, env, archivedCopy, nil)

	duplicated := newJob(t, env) // a photo duplicated for another user: both migrated
	a := row(t, env, duplicated, owner())
	b := row(t, env, duplicated, owner())

	late := newJob(t, env) // a second row inserted after the producer ran
	row(t, env, late, owner())

	env.Migrate(t)
	lateRow := row(t, env, late, owner())

	rep, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)
	requireKept(t, env, archivedCopy, "an archived row references them")
	requireKept(t, env, late, "a row inserted after the producer ran references them")
	requireGone(t, env, duplicated, "both rows are migrated with their own copies")
	require.Positive(t, rep.KeptTotal())

	// Each row of the duplicated job got its own copies, and they survive.
	for _, id := range []string{a, b} {
		p := env.Photo(t, id)
		require.True(t, keylayout.IsUserScoped(p.Original))
		require.True(t, exists(t, env, p.Original), id)
		require.True(t, exists(t, env, *p.Thumbnail), id)
	}
	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.Zero(t, r.ProblemsByKind[verify.ReferencedKeyMissing], "%+v", r.Problems)

	// verify fails when an archived or not-yet-migrated row references a
	// legacy object that is gone.
	require.NoError(t, env.Objects.Delete(ctx, archivedCopy.Thumbnail))
	require.NoError(t, env.Objects.Delete(ctx, late.Original))
	r, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	missing := map[string]string{}
	for _, p := range r.Problems {
		if p.Kind == verify.ReferencedKeyMissing {
			missing[p.Key] = p.PhotoID
		}
	}
	require.Equal(t, ownerless, missing[archivedCopy.Thumbnail], "%+v", r.Problems)
	require.Equal(t, lateRow, missing[late.Original], "%+v", r.Problems)
}

// Case 6: the checks hold at the moment of deletion. Between cleanup's checks
// and its delete, the legacy object is overwritten, or a row is rolled back
// or inserted that needs the object: nothing is deleted.
func TestCleanupChecksHoldAtTheMomentOfDeletion(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	overwritten, rolledBack, reinserted := newJob(t, env), newJob(t, env), newJob(t, env)
	row(t, env, overwritten, owner())
	rb := row(t, env, rolledBack, owner())
	row(t, env, reinserted, owner())
	env.Migrate(t)

	rewrite := []byte("legacy thumbnail rewritten at the last moment")
	rep, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.WithHooks(cleanup.Options{Grace: 0}, cleanup.Hooks{BeforeDelete: func(ctx context.Context, keys []string) error {
		env.Put(t, overwritten.Thumbnail, rewrite, "image/jpeg", nil)
		if _, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: rb, Force: true}); err != nil {
			return err
		}
		row(t, env, reinserted, owner())
		return nil
	}}))
	require.NoError(t, err)
	got, err := env.Objects.Get(ctx, overwritten.Thumbnail)
	require.NoError(t, err)
	require.Equal(t, rewrite, got, "the legacy object written after the checks was not deleted")
	requireKept(t, env, rolledBack, "the photo was rolled back right before the delete")
	requireKept(t, env, reinserted, "a row referencing them appeared right before the delete")
	require.Positive(t, rep.KeptTotal())
}

// Case 6: cleanup records its intent before deleting, so a crash between the
// delete and its record leaves the ledger truthful; the next pass records it.
func TestCleanupCrashAfterDeleteLeavesTheLedgerTruthful(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	j := newJob(t, env)
	row(t, env, j, owner())
	env.Migrate(t)

	crash := errors.New("killed right after the delete")
	_, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.WithHooks(cleanup.Options{Grace: 0}, cleanup.Hooks{AfterDelete: func(context.Context, []string) error { return crash }}))
	require.ErrorIs(t, err, crash)
	requireGone(t, env, j, "deleted before the crash")
	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.True(t, r.OK(), "the ledger knew it was deleting them: %+v", r.Problems)

	_, err = cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)
	recorded := ledgertest.Count(ledgertest.ObjectMoves(t, env.Store), func(o ledgertest.ObjectMove) bool { return o.DeletedAt != nil })
	require.Equal(t, 5, recorded)
}

// Case 6: the grace period counts from when each object's move committed,
// not from the photo's swap.
func TestCleanupGraceCountsFromEachObjectsCommit(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	j := newJob(t, env)
	row(t, env, j, owner())
	env.Migrate(t)
	// The photo was swapped two hours ago; its animation's move committed
	// only now (moved later, say, by verify --requeue).
	ledgertest.BackdateSwapped(t, env.Store, 2*time.Hour)
	ledgertest.BackdateCommittedExcept(t, env.Store, j.Anim, 2*time.Hour)

	_, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: time.Hour})
	require.NoError(t, err)
	require.True(t, exists(t, env, j.Anim), "the animation's move is inside the grace period")
	require.False(t, exists(t, env, j.Original))
}

// Case 7: a photo the application deleted after its migration does not stall
// cleanup or verify: its legacy objects are cleaned after the grace period
// (no other row needs them) and it is reported as deleted.
func TestDeletedPhotosDoNotStallCleanupOrVerify(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	gone, kept := newJob(t, env), newJob(t, env)
	o := owner()
	id := row(t, env, gone, o)
	row(t, env, kept, owner())
	env.Migrate(t)
	svc, err := storage.New(env.S3, env.Objects.Bucket(), storage.Options{})
	require.NoError(t, err)
	_, err = env.Store.Pool().Exec(ctx, `DELETE FROM photos WHERE id = $1`, id)
	require.NoError(t, err)
	_, err = svc.DeletePhoto(ctx, *o, id)
	require.NoError(t, err)

	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.True(t, r.OK(), "%+v", r.Problems)
	require.EqualValues(t, 5, r.DeletedPhotos)

	rep, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)
	requireGone(t, env, gone, "the deleted photo's legacy objects are cleaned")
	requireGone(t, env, kept, "the batch was not stalled")
	require.EqualValues(t, 1, rep.DeletedPhotos)
	require.Equal(t, []string{id}, rep.DeletedPhotoExamples)
	require.Equal(t, "deleted", ledgertest.PhotoMoveOf(t, env.Store, id).State)

}

// Found by the soak (seed 601289): a rollback that swaps a row back between
// cleanup's last look at the rows and its delete would point the row at
// legacy objects that are about to go. Cleanup claims the objects in one
// transaction with the rows locked; a rollback after the claim is refused
// (run again after the cleanup, it copies the objects back), one before it
// makes cleanup keep them.
func TestRollbackDuringCleanupsDeleteNeverPointsAtDeletedObjects(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	j := newJob(t, env)
	id := row(t, env, j, owner())
	env.Migrate(t)

	var refused string
	_, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.WithHooks(cleanup.Options{Grace: 0}, cleanup.Hooks{AfterClaim: func(ctx context.Context, keys []string) error {
		rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: id, Force: true})
		if err == nil && len(rep.Refused) == 1 {
			refused = rep.Refused[0].Reason
		}
		return err
	}}))
	require.NoError(t, err)
	require.Contains(t, refused, "cleanup", "the rollback in the middle of the delete was refused")
	p := env.Photo(t, id)
	for _, k := range p.Columns() {
		require.True(t, exists(t, env, k), "the row points at %s, which exists", k)
	}

	// Run again once cleanup is done: the objects are copied back first.
	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: id, Force: true})
	require.NoError(t, err)
	require.Equal(t, 1, rep.RolledBack, "%+v", rep.Refused)
	p = env.Photo(t, id)
	require.Equal(t, j.Original, p.Original)
	for _, k := range p.Columns() {
		require.True(t, exists(t, env, k), "after the rollback the row points at %s, which exists", k)
	}
}

// The application may insert a row sharing a legacy photo's objects (a
// duplicate) at any moment, also after cleanup's last read of the rows and
// before its delete (a CI soak, seed 750142, saw exactly that). The protocol
// that closes the window has two halves: cleanup reads the rows once more
// after its delete intent is committed, and keeps what a row appeared for; the
// application checks, after inserting, that no intent covers the keys
// (ledger.PhotoLegacyKeysClaimed) and withdraws the row if one does. Here the row
// lands right after the claim: cleanup must keep the objects.
func TestCleanupKeepsObjectsARowClaimedRightAfterTheIntent(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	j := newJob(t, env)
	row(t, env, j, owner())
	env.Migrate(t)

	var dup string
	var claimedSeen bool
	rep, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.WithHooks(cleanup.Options{Grace: 0}, cleanup.Hooks{AfterClaim: func(ctx context.Context, keys []string) error {
		dup = row(t, env, j, owner())
		// The application's half: after inserting, it sees the claim.
		claimed, err := env.Store.PhotoLegacyKeysClaimed(ctx, []string{j.Original, j.Processed, j.Thumbnail})
		claimedSeen = claimed
		return err
	}}))
	require.NoError(t, err)
	require.True(t, claimedSeen, "an application inserting after the claim sees it (and would withdraw its row)")
	requireKept(t, env, j, "a row sharing them appeared right after the claim")
	require.Positive(t, rep.KeptTotal())
	claimed, err := env.Store.PhotoLegacyKeysClaimed(ctx, []string{j.Original})
	require.NoError(t, err)
	require.False(t, claimed, "the kept objects' intents are withdrawn: a later duplicate is safe")
	require.NotEmpty(t, dup)
}

// The ledger's word on a legacy object's deletion (what the soak's
// cleanup_accounted checks the bucket against) follows cleanup and rollback:
// deleted when cleanup deleted it, not any more once a rollback copied it
// back, and deleted again when cleanup deletes it again. A shared object a
// rollback of one photo copies back stays recorded as deleted by the other
// photo's move, but the copy back is later: not gone.
func TestTheLedgerRecordsEveryDeletionAndEveryCopyBack(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	j := newJob(t, env)
	id := row(t, env, j, owner())
	row(t, env, j, owner()) // a duplicate: two moves of each object
	env.Migrate(t)
	gone := func(why string, want bool) {
		t.Helper()
		d, err := env.Store.ObjectMoveLegacyDeletions(ctx, j.keys())
		require.NoError(t, err)
		for _, k := range j.keys() {
			require.Equal(t, want, d[k].Gone(), "%s: %s: %+v", why, k, d[k])
			require.Equal(t, !want, exists(t, env, k), "%s: %s exists", why, k)
		}
	}
	gone("migrated, not cleaned", false)
	_, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)
	gone("cleaned", true)

	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: id, Force: true})
	require.NoError(t, err)
	require.Equal(t, 1, rep.RolledBack, "%+v", rep.Refused)
	d, err := env.Store.ObjectMoveLegacyDeletions(ctx, []string{j.Original})
	require.NoError(t, err)
	require.False(t, d[j.Original].Gone(), "copied back: %+v", d[j.Original])
	require.True(t, exists(t, env, j.Original))
}
