package ledger_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

func TestMigrateIsIdempotentAndSafeConcurrently(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{}) // migrated once already
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := ledger.Open(ctx, env.DatabaseURL, 2)
			if err != nil {
				errs <- err
				return
			}
			defer st.Close()
			applied, err := st.Migrate(ctx)
			if err == nil && len(applied) > 0 {
				t.Errorf("migration re-applied: %v", applied)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, env.Store.CheckSchema(ctx))
}

func TestCheckSchemaRefusesAnEmptyDatabase(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	_, err := env.Store.Pool().Exec(ctx, `DROP SCHEMA keymigrate CASCADE`)
	require.NoError(t, err)
	require.ErrorIs(t, env.Store.CheckSchema(ctx), ledger.ErrSchemaOutdated)
	_, err = env.Store.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, env.Store.CheckSchema(ctx))
}

func TestSwapIsACompareAndSwap(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	id, owner := "0b7e2d61-9c4f-4a3e-b2d1-5e6f7a8b9c0d", "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	env.InsertPhoto(t, id, &owner, "uploaded/j.jpg", nil, testenv.Ptr("thumbnails/j.jpg"))
	in := ledger.SwapInput{
		PhotoID: id, RunID: "r", OwnerID: owner, JobID: "j",
		Old:     ledger.Keys{Original: "uploaded/j.jpg", Thumbnail: testenv.Ptr("thumbnails/j.jpg")},
		New:     ledger.Keys{Original: "users/" + owner + "/raw/" + id + "/original.jpg", Thumbnail: testenv.Ptr("users/" + owner + "/thumbs/" + id + ".jpg")},
		Objects: []ledger.ObjectMove{{Kind: "original", OldKey: "uploaded/j.jpg", NewKey: "users/" + owner + "/raw/" + id + "/original.jpg", Size: 3}},
	}
	stale := in
	stale.Old.Thumbnail = testenv.Ptr("thumbnails/other.jpg")
	out, err := env.Store.PhotoMoveSwap(ctx, stale)
	require.NoError(t, err)
	require.Equal(t, ledger.RowChanged, out, "a row that differs from what was planned is not swapped")
	wrongOwner := in
	wrongOwner.OwnerID = "1f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	out, err = env.Store.PhotoMoveSwap(ctx, wrongOwner)
	require.NoError(t, err)
	require.Equal(t, ledger.RowChanged, out, "a row whose owner changed is not swapped")
	require.Equal(t, "uploaded/j.jpg", env.Photo(t, id).Original)

	out, err = env.Store.PhotoMoveSwap(ctx, in)
	require.NoError(t, err)
	require.Equal(t, ledger.Swapped, out)
	require.Equal(t, in.New.Original, env.Photo(t, id).Original)
	out, err = env.Store.PhotoMoveSwap(ctx, in)
	require.NoError(t, err)
	require.Equal(t, ledger.RowChanged, out, "the second swap finds the row changed")
	var committed int
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.object_moves WHERE committed_at IS NOT NULL`).Scan(&committed))
	require.Equal(t, 1, committed)
}

// A worker hands a photo back (a pause, an outage) by sending a fresh message
// and then marking the photo released. If another worker has already taken
// the fresh message, the first one's release must not mark the photo enqueued
// under the second one's hands: in_progress means in a worker's hands, and
// status and the sweeper rely on it.
func TestReleaseDoesNotTakeThePhotoFromAnotherWorker(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	owner := "0f9b8a55-6f1a-4d0e-9d55-0e2f1f0b7a10"
	id := "5c8b5c44-3c1e-4a4f-bb0e-8a2b8d0f6e21"
	env.InsertPhoto(t, id, &owner, "uploaded/0b7e5a1c-2b7d-4c4e-9a57-3f1d6c2e9b80.jpg", nil, nil)
	require.NoError(t, env.Store.PhotoMoveRecordEnqueued(ctx, "run-a", []ledger.Photo{{ID: id, OwnerID: &owner}}))

	_, err := env.Store.PhotoMoveBeginAttempt(ctx, id, "run-a", "worker-1")
	require.NoError(t, err)
	_, err = env.Store.PhotoMoveBeginAttempt(ctx, id, "run-a", "worker-2") // the fresh message
	require.NoError(t, err)
	require.NoError(t, env.Store.PhotoMoveRelease(ctx, id, "worker-1"))
	var state, holder string
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT state, coalesce(worker_id, '') FROM keymigrate.photo_moves WHERE photo_id = $1`, id).Scan(&state, &holder))
	require.Equal(t, "in_progress", state, "worker-2 holds it")
	require.Equal(t, "worker-2", holder)

	require.NoError(t, env.Store.PhotoMoveRelease(ctx, id, "worker-2"))
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT state, coalesce(worker_id, '') FROM keymigrate.photo_moves WHERE photo_id = $1`, id).Scan(&state, &holder))
	require.Equal(t, "enqueued", state)
	require.Empty(t, holder)
}

// A purged photo is finished: `archived purge` deleted its legacy objects and
// recorded it purged. A late duplicate delivery of its message (the worker
// then finds the row archived and settles it as already done, touching no
// state) must not take it back to in_progress, where nothing would ever
// settle it: the fleet would never go idle (found by the soak with
// -soak.archived-ops).
func TestDuplicateDeliveryKeepsAPurgedPhotoPurged(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	id := "6d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
	env.InsertPhoto(t, id, nil, "uploaded/7e2f3a4b-5c6d-4e7f-8091-a2b3c4d5e6f7.jpg", nil, nil)
	require.NoError(t, env.Store.PhotoMoveRecordEnqueued(ctx, "run-a", []ledger.Photo{{ID: id}}))
	_, err := env.Store.PhotoMoveBeginAttempt(ctx, id, "run-a", "worker-1")
	require.NoError(t, err)
	p, err := env.Store.PhotoGet(ctx, id)
	require.NoError(t, err)
	archived, err := env.Store.PhotoMoveArchive(ctx, p, "run-a")
	require.NoError(t, err)
	require.True(t, archived)
	require.NoError(t, env.Store.PurgeFinish(ctx, id, nil, true))

	att, err := env.Store.PhotoMoveBeginAttempt(ctx, id, "run-a", "worker-2") // a duplicate delivery
	require.NoError(t, err)
	require.Equal(t, ledger.StatePurged, att.State)
	var state string
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT state FROM keymigrate.photo_moves WHERE photo_id = $1`, id).Scan(&state))
	require.Equal(t, "purged", state)

	// A permanent failure of that delivery (its objects are gone: purge
	// deleted them) is logged, and the photo stays purged: 'failed' would
	// put a finished photo back among those the DLQ review must settle.
	require.NoError(t, env.Store.FailureRecord(ctx, ledger.Failure{PhotoID: id, RunID: "run-a", Reason: "source_missing", Permanent: true, Error: "gone"}))
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT state FROM keymigrate.photo_moves WHERE photo_id = $1`, id).Scan(&state))
	require.Equal(t, "purged", state, "a permanent failure took a purged photo to another state")
}

// A photo the operator stopped (its run aborted: rolled back) or the
// application deleted is final. An attempt already in flight when that
// happened can still end in a permanent failure (its source is gone, say);
// the failure is logged, but the photo must keep its state: as 'failed', a
// later `dlq retry` of that same message would take it back to in_progress
// and migrate a photo the operator stopped, and a deleted photo would be
// counted among those the DLQ review must settle.
func TestAPermanentFailureKeepsAStoppedPhotoStopped(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	owner := "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	stopped := "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"
	deleted := "3c4d5e6f-7a8b-4c9d-8e1f-2a3b4c5d6e7f"
	env.InsertPhoto(t, stopped, &owner, "uploaded/4d5e6f7a-8b9c-4d0e-9f2a-3b4c5d6e7f80.jpg", nil, nil)
	env.InsertPhoto(t, deleted, &owner, "uploaded/5e6f7a8b-9c0d-4e1f-8a3b-4c5d6e7f8091.jpg", nil, nil)
	_, _, err := env.Store.RunStart(ctx, "run-a", "", nil)
	require.NoError(t, err)
	photos := []ledger.Photo{{ID: stopped, OwnerID: &owner}, {ID: deleted, OwnerID: &owner}}
	require.NoError(t, env.Store.PhotoMoveRecordEnqueued(ctx, "run-a", photos))
	for _, p := range photos {
		_, err := env.Store.PhotoMoveBeginAttempt(ctx, p.ID, "run-a", "worker-1")
		require.NoError(t, err)
	}
	_, err = env.Store.RunAbort(ctx, "run-a", "operator")
	require.NoError(t, err)
	require.NoError(t, env.Store.PhotoMoveMarkDeleted(ctx, deleted))

	for _, id := range []string{stopped, deleted} {
		require.NoError(t, env.Store.FailureRecord(ctx, ledger.Failure{PhotoID: id, RunID: "run-a", Reason: "source_missing", Permanent: true, Error: "gone"}))
	}
	var state string
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT state FROM keymigrate.photo_moves WHERE photo_id = $1`, deleted).Scan(&state))
	require.Equal(t, "deleted", state, "a permanent failure took a deleted photo to another state")
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT state FROM keymigrate.photo_moves WHERE photo_id = $1`, stopped).Scan(&state))
	require.Equal(t, "rolled_back", state, "a permanent failure took a photo of an aborted run to another state")

	// The same message redriven from the DLQ: the photo stays stopped.
	att, err := env.Store.PhotoMoveBeginAttempt(ctx, stopped, "run-a", "worker-2")
	require.NoError(t, err)
	require.False(t, att.Proceed, "a redriven message of an aborted run would migrate the photo (state %s)", att.State)
}
