package rollback_test

// Issue 9, case 3 and 4: rollback beside a live application and a running
// fleet never discards the application's newer bytes, never brings back what
// a user deleted, and does not race workers that hold photos.

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

type photo struct {
	ID, Owner, Job string
	Legacy         []string
	Anim           keylayout.Legacy
}

// migrated seeds one legacy photo with every kind of object and migrates it.
func migrated(t *testing.T, env *testenv.Env) photo {
	t.Helper()
	p := photo{ID: uuid.NewString(), Owner: uuid.NewString(), Job: uuid.NewString()}
	orig := "uploaded/" + p.Job + ".jpg"
	proc := "restored/" + p.Job + "/" + uuid.NewString() + ".jpg"
	thumb := "thumbnails/" + p.Job + ".jpg"
	anim := "animated/" + p.Job + "/" + uuid.NewString() + "_loop.mp4"
	p.Legacy = []string{orig, proc, thumb, "meta/" + p.Job + ".json", anim}
	for _, k := range p.Legacy {
		env.Put(t, k, []byte("bytes of "+k), "application/octet-stream", nil)
	}
	p.Anim, _ = keylayout.ParseLegacy(anim)
	env.InsertPhoto(t, p.ID, &p.Owner, orig, &proc, &thumb)
	env.Migrate(t)
	require.True(t, keylayout.IsUserScoped(env.Photo(t, p.ID).Original))
	return p
}

func app(t *testing.T, env *testenv.Env) *storage.Service {
	svc, err := storage.New(env.S3, env.Objects.Bucket(), storage.Options{})
	require.NoError(t, err)
	return svc
}

func put(t *testing.T, svc *storage.Service, owner string, ref storage.Ref, body []byte) {
	t.Helper()
	_, err := svc.Put(context.Background(), owner, ref, bytes.NewReader(body), int64(len(body)), "")
	require.NoError(t, err)
}

func refusedFor(rep *rollback.Report, id string) string {
	for _, r := range rep.Refused {
		if r.PhotoID == id {
			return r.Reason
		}
	}
	return ""
}

// The application regenerated the thumbnail after the migration: rolling the
// row back would point it at the old legacy thumbnail and drop the newer one.
func TestRollbackRefusesWhenTheApplicationRewroteAColumnObject(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	p := migrated(t, env)
	newer := []byte("a thumbnail the application made after the migration")
	put(t, app(t, env), p.Owner, storage.Thumbnail(p.ID), newer)
	before := env.Photo(t, p.ID)

	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: p.ID, DeleteNew: true, Force: true})
	require.NoError(t, err)
	require.Contains(t, refusedFor(rep, p.ID), "rewrote", "%+v", rep.Refused)
	require.Equal(t, before, env.Photo(t, p.ID), "the row is left as it is")
	got, err := env.Objects.Get(ctx, keylayout.ThumbnailKey(p.Owner, p.ID))
	require.NoError(t, err)
	require.Equal(t, newer, got, "the application's newer bytes survive")
}

// The application edited the metadata after the migration: the row may be
// rolled back (the application keeps reading its user-scoped metadata), but
// --delete-new deletes only the copies keymigrate wrote, never that one.
func TestRollbackDeleteNewKeepsTheApplicationsNewerBytes(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	p := migrated(t, env)
	edited := []byte(`{"title":"edited after the migration"}`)
	put(t, app(t, env), p.Owner, storage.Metadata(p.ID), edited)

	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: p.ID, DeleteNew: true, Force: true})
	require.NoError(t, err)
	require.Equal(t, 1, rep.RolledBack, "%+v", rep.Refused)
	require.Equal(t, p.Legacy[0], env.Photo(t, p.ID).Original)
	got, err := env.Objects.Get(ctx, keylayout.MetadataKey(p.Owner, p.ID))
	require.NoError(t, err)
	require.Equal(t, edited, got, "the application's metadata was not deleted")
	require.Equal(t, 4, rep.DeletedNew, "keymigrate's own four copies were deleted")
	require.Contains(t, refusedFor(rep, p.ID), "kept", "%+v", rep.Refused)
}

// The user deleted an animation after the migration: rolling back would make
// the legacy animation visible again.
func TestRollbackRefusesToBringBackWhatTheUserDeleted(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	p := migrated(t, env)
	require.NoError(t, app(t, env).Delete(ctx, p.Owner, storage.Animation(p.ID, p.Anim.AnimationID, p.Anim.Suffix)))
	before := env.Photo(t, p.ID)

	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: p.ID, Force: true})
	require.NoError(t, err)
	require.Contains(t, refusedFor(rep, p.ID), "deleted", "%+v", rep.Refused)
	require.Equal(t, before, env.Photo(t, p.ID))
}

// Case 4: rollback does not race the fleet: with photos in a worker's hands
// it refuses, with a clear message, unless --force (safe: the worker's swap
// re-checks the ledger) or the fleet drains within --wait.
func TestRollbackWaitsUntilTheFleetHoldsNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	p := migrated(t, env)
	_, err := env.Store.WorkerHeartbeat(ctx, ledger.WorkerBeat{WorkerID: "w1", Host: "h", PID: 1, InFlight: 3}, 10*time.Second)
	require.NoError(t, err)

	_, err = rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: p.ID, Wait: time.Second})
	require.ErrorIs(t, err, rollback.ErrFleetBusy)
	require.ErrorContains(t, err, "1 workers hold 3 photos")
	require.True(t, keylayout.IsUserScoped(env.Photo(t, p.ID).Original), "nothing rolled back")

	// The worker finishes what it holds (its next heartbeat): rollback goes on.
	go func() {
		time.Sleep(500 * time.Millisecond)
		_, _ = env.Store.WorkerHeartbeat(context.Background(), ledger.WorkerBeat{WorkerID: "w1", Host: "h", PID: 1, InFlight: 0}, 10*time.Second)
	}()
	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: p.ID, Wait: 10 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 1, rep.RolledBack, "%+v", rep.Refused)
}
