package worker_test

// Issue 9: the worker beside a live application. Each test stages one race
// between the worker and the application (or an operator) on the real servers
// and checks what the application would notice: its bytes, its deletions,
// its rows.

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/worker"
)

// racingProxyURL forwards to the S3 server, and when a CopyObject to target
// succeeds it lets write run (the application writing the same key) before the
// worker sees the copy's response: the application's write lands between the
// copy and anything the worker reads afterwards.
func racingProxyURL(t *testing.T, target string, write func()) string {
	return raceURL(t, target, false, write)
}

// raceURL is racingProxyURL; with before, act runs before the CopyObject
// reaches the server instead (the copy lands just after the application acted).
func raceURL(t *testing.T, target string, before bool, act func()) string {
	t.Helper()
	upstream, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.Header.Get("X-Amz-Copy-Source") == "" || !strings.HasSuffix(r.URL.Path, "/"+target) {
			proxy.ServeHTTP(w, r)
			return
		}
		if before {
			once.Do(act)
		}
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK && !before {
			once.Do(act)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = io.Copy(w, rec.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// proxyURL is an S3 endpoint in front of the real server.
type proxyURL string

func (u proxyURL) store(t *testing.T, env *testenv.Env) *objstore.Store {
	client := s3.NewFromConfig(env.AWS, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(string(u))
		o.UsePathStyle = true
	})
	return objstore.New(client, env.Objects.Bucket(), objstore.Options{})
}

func (b *testBundle) workerWith(objects *objstore.Store, c worker.Config) *worker.Worker {
	return worker.New(b.env.Store, objects, b.env.Queue, b.env.DLQ, b.log, c)
}

func (b *testBundle) app() *storage.Service {
	svc, err := storage.New(b.env.S3, b.env.Objects.Bucket(), storage.Options{})
	require.NoError(b.t, err)
	return svc
}

// ledgerETags lists every ETag the ledger records as keymigrate's own write at key.
func (b *testBundle) ledgerETag(key string) string {
	b.t.Helper()
	for _, o := range ledgertest.ObjectMoves(b.t, b.env.Store) {
		if o.NewKey == key {
			return o.ETag
		}
	}
	return ""
}

func (b *testBundle) usersKeys() []string {
	b.t.Helper()
	keys, err := b.env.Objects.List(context.Background(), "users/")
	require.NoError(b.t, err)
	var out []string
	for _, k := range keys {
		if !strings.HasPrefix(k, objstore.ProbePrefix) {
			out = append(out, k)
		}
	}
	return out
}

// Case 2: an application write that lands between CopyObject and anything
// the worker does next is the application's, not keymigrate's: it is never
// recorded as keymigrate's own write and never overwritten by a retry. Either
// the worker reads the copy back (pinned to its ETag), sees the conflict and
// leaves the row alone (destination_conflict); or, where the copy's response
// verified it (the fast path), the row points at the key the application just
// wrote, exactly as if the application had written right after the swap.
func TestAppWriteBetweenCopyAndReadIsNeverRecordedAsOurs(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	thumb := keylayout.ThumbnailKey(f.Owner, f.ID)
	appBody := []byte("a thumbnail the application regenerated at that instant")
	objects := proxyURL(racingProxyURL(t, thumb, func() {
		b.env.Put(t, thumb, appBody, "image/jpeg", nil)
	})).store(t, b.env)
	b.send(f.ID, "run-1")
	b.drain(b.workerWith(objects, cfg()))
	// A redelivery (or the operator's redrive) must not overwrite it either.
	b.send(f.ID, "run-1")
	b.drain(b.workerWith(objects, cfg()))

	require.Equal(t, appBody, b.get(thumb), "the application's bytes survive")
	app, err := b.env.Objects.Head(context.Background(), thumb)
	require.NoError(t, err)
	require.NotEqual(t, app.ETag, b.ledgerETag(thumb), "the application's write is never recorded as keymigrate's")
	p := b.env.Photo(t, f.ID)
	switch *p.Thumbnail {
	case f.Thumbnail:
		dead := b.dlqMessages()
		require.NotEmpty(t, dead)
		require.Equal(t, "destination_conflict", dead[0].Attributes[queue.AttrReason])
	case thumb:
		require.Empty(t, b.dlqMessages())
	default:
		t.Fatalf("thumbnail_key %s", *p.Thumbnail)
	}
}

// Case 2, for an object no column references: metadata the application wrote
// under users/ before the worker got to the photo supersedes the legacy one;
// the photo is still migrated, and the application's bytes are kept.
func TestAppMetadataWrittenFirstSupersedesTheLegacyObject(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	meta := keylayout.MetadataKey(f.Owner, f.ID)
	appBody := []byte(`{"title":"edited by the user during the migration"}`)
	b.env.Put(t, meta, appBody, "application/json", nil)
	b.send(f.ID, "run-1")
	w := b.worker(cfg())
	b.drain(w)

	require.Equal(t, appBody, b.get(meta), "the application's metadata survives")
	require.EqualValues(t, 1, w.Stats().Migrated)
	require.Empty(t, b.dlqMessages())
	require.Equal(t, 1, ledgertest.Count(ledgertest.ObjectMoves(t, b.env.Store), func(o ledgertest.ObjectMove) bool { return o.NewKey == meta && o.SupersededAt != nil }))
	p := b.env.Photo(t, f.ID)
	require.Equal(t, keylayout.ThumbnailKey(f.Owner, f.ID), *p.Thumbnail)
}

// Case 4: a message of an older run (still queued, or redriven from the DLQ)
// does not migrate a photo the operator rolled back.
func TestOlderRunMessageDoesNotMigrateARolledBackPhoto(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	b.drain(b.worker(cfg()))
	b.requireMigrated(f)
	rep, err := rollback.Run(ctx, b.env.Store, b.env.Objects, rollback.Options{PhotoID: f.ID, Force: true})
	require.NoError(t, err)
	require.Equal(t, 1, rep.RolledBack, "%+v", rep.Refused)

	// The rolled-back run's own message, and one of an even older run.
	b.sendRaw(f.ID, "run-1")
	b.sendRaw(f.ID, "run-0")
	w := b.worker(cfg())
	b.drain(w)
	require.Equal(t, f.Original, b.env.Photo(t, f.ID).Original, "the photo stays rolled back")
	require.Equal(t, 1, b.photoMovesOf(f.ID, "rolled_back"))
	require.EqualValues(t, 0, w.Stats().Migrated)
	require.Empty(t, b.dlqMessages())
	b.queueEmpty()

	// A new run, started by the operator after the rollback, migrates it again.
	_, _, err = b.env.Store.RunStart(ctx, "run-2", "run-2", nil)
	require.NoError(t, err)
	b.send(f.ID, "run-2")
	b.drain(b.worker(cfg()))
	b.requireMigrated(f)
}

// Case 4: a worker that already held the photo when the rollback ran does not
// swap it back to user-scoped keys: the swap re-checks the ledger in its
// transaction.
func TestWorkerHoldingThePhotoDuringRollbackDoesNotSwap(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	b.drain(b.worker(cfg()))

	// A duplicate delivery is taken by a worker; between taking it and reading
	// the row, the operator rolls the photo back.
	var once sync.Once
	c := cfg()
	hooks := worker.Hooks{BeforeLoad: func(ctx context.Context, photoID string) (err error) {
		once.Do(func() {
			var rep *rollback.Report
			rep, err = rollback.Run(ctx, b.env.Store, b.env.Objects, rollback.Options{PhotoID: photoID, Force: true})
			if err == nil && rep.RolledBack != 1 {
				t.Errorf("rollback refused: %+v", rep.Refused)
			}
		})
		return err
	}}
	b.sendRaw(f.ID, "run-1")
	w := worker.SetHooks(b.worker(c), hooks)
	b.drain(w)
	require.Equal(t, f.Original, b.env.Photo(t, f.ID).Original, "the worker in hand did not re-migrate the photo")
	require.Equal(t, 1, b.photoMovesOf(f.ID, "rolled_back"))
	require.EqualValues(t, 0, w.Stats().Migrated)
	require.Empty(t, b.dlqMessages())
}

// Case 5: after a photo is migrated, the user deletes one of its animations;
// a redelivered message does not bring it back.
func TestRedeliveryDoesNotBringBackAnAnimationTheUserDeleted(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	b.drain(b.worker(cfg()))
	b.requireMigrated(f)
	l, _ := keylayout.ParseLegacy(f.Animation)
	require.NoError(t, b.app().Delete(ctx, f.Owner, storage.Animation(f.ID, l.AnimationID, l.Suffix)))

	b.send(f.ID, "run-1")
	w := b.worker(cfg())
	b.drain(w)
	_, err := b.env.Objects.Head(ctx, keylayout.AnimationKey(f.Owner, f.ID, l.AnimationID, l.Suffix))
	require.ErrorIs(t, err, objstore.ErrNotFound, "the user's deletion is final")
	require.EqualValues(t, 0, w.Stats().ObjectsCopied)
	require.Empty(t, b.dlqMessages())
}

// Case 5: the application deletes the photo (row and user-scoped objects)
// while the worker's copies are in flight: no copy is left under users/, and
// the photo is recorded as deleted, not dead-lettered.
func TestPhotoDeletedWhileCopyInFlightLeavesNoCopy(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	f := b.legacyPhoto()
	// The deletion lands just before the first copy reaches S3: every copy
	// lands after the application deleted the photo's objects.
	objects := proxyURL(raceURL(t, keylayout.OriginalKey(f.Owner, f.ID, "png"), true, func() {
		_, err := b.env.Store.Pool().Exec(ctx, `DELETE FROM photos WHERE id=$1`, f.ID)
		require.NoError(t, err)
		_, err = b.app().DeletePhoto(ctx, f.Owner, f.ID)
		require.NoError(t, err)
	})).store(t, b.env)
	b.send(f.ID, "run-1")
	b.drain(b.workerWith(objects, cfg()))
	require.Empty(t, b.usersKeys(), "nothing of the deleted photo is left under users/")
	require.Equal(t, 1, b.photoMovesOf(f.ID, "deleted"))

	require.Empty(t, b.dlqMessages())
	b.queueEmpty()
	for _, k := range f.legacyKeys() {
		require.Equal(t, f.Bodies[k], b.get(k), "legacy %s untouched", k)
	}
}

// Case 5: the photo's owner changes (an account merge) between the copies and
// the swap: nothing is left under the former owner's prefix, and the photo is
// migrated under its new owner.
func TestOwnerChangedMidFlightLeavesNoCopyUnderTheFormerOwner(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	newOwner := uuid.NewString()
	var once sync.Once
	c := cfg()
	hooks := worker.Hooks{BeforeSwap: func(ctx context.Context, photoID string) (err error) {
		once.Do(func() {
			_, err = b.env.Store.Pool().Exec(ctx, `UPDATE photos SET owner_id=$2 WHERE id=$1`, photoID, newOwner)
		})
		return err
	}}
	b.send(f.ID, "run-1")
	w := worker.SetHooks(b.worker(c), hooks)
	b.drain(w)
	for _, k := range b.usersKeys() {
		require.True(t, strings.HasPrefix(k, keylayout.UserPrefix(newOwner)), "%s is outside the new owner's prefix", k)
	}
	p := b.env.Photo(t, f.ID)
	require.Equal(t, keylayout.OriginalKey(newOwner, f.ID, "png"), p.Original)
	require.Equal(t, f.Bodies[f.Original], b.get(p.Original))
	require.Len(t, b.usersKeys(), 5)
	require.Empty(t, b.dlqMessages())
}

// Case 5 (issue 18): the application removes the photo's owner between the
// copies and the swap: the photo is archived, and nothing is left under the
// former owner's prefix (users/ holds only what rows point at).
func TestOwnerRemovedMidFlightArchivesAndLeavesNoCopy(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	var once sync.Once
	hooks := worker.Hooks{BeforeSwap: func(ctx context.Context, photoID string) (err error) {
		once.Do(func() {
			_, err = b.env.Store.Pool().Exec(ctx, `UPDATE photos SET owner_id=NULL WHERE id=$1`, photoID)
		})
		return err
	}}
	b.send(f.ID, "run-1")
	b.drain(worker.SetHooks(b.worker(cfg()), hooks))
	require.Empty(t, b.usersKeys(), "nothing of the ownerless photo is left under its former owner's prefix")
	require.Equal(t, 1, b.photoMovesOf(f.ID, "archived"))
	p := b.env.Photo(t, f.ID)
	require.Equal(t, f.Original, p.Original, "an archived photo keeps its legacy keys")
	require.Empty(t, b.dlqMessages())
	for _, k := range f.legacyKeys() {
		require.Equal(t, f.Bodies[k], b.get(k), "legacy %s untouched", k)
	}
}

// A process killed between an archive and its discard leaves the copies of
// the photo's earlier plan under its former owner's prefix, recorded as
// intents: the next delivery of the archived photo discards them.
func TestRedeliveredArchivedPhotoDiscardsTheCopiesAKillLeft(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	f := b.legacyPhoto()
	st := b.env.Store
	newKey := keylayout.OriginalKey(f.Owner, f.ID, "png")
	_, err := st.ObjectMoveRecordIntents(ctx, f.ID, f.Job, []ledger.Intent{{Kind: string(keylayout.KindOriginal), OldKey: f.Original, NewKey: newKey}})
	require.NoError(t, err)
	b.env.Put(t, newKey, f.Bodies[f.Original], "image/png", map[string]string{"camera": "x100v"})
	_, err = st.Pool().Exec(ctx, `UPDATE photos SET owner_id = NULL WHERE id = $1`, f.ID)
	require.NoError(t, err)
	p, err := st.PhotoGet(ctx, f.ID)
	require.NoError(t, err)
	archived, err := st.PhotoMoveArchive(ctx, p, "run-1")
	require.NoError(t, err)
	require.True(t, archived)
	require.Equal(t, []string{newKey}, b.usersKeys(), "the kill's leftover, before the redelivery")

	b.sendRaw(f.ID, "run-1")
	b.drain(b.worker(cfg()))
	require.Empty(t, b.usersKeys(), "the redelivery discarded the copy")
	require.Equal(t, 1, b.photoMovesOf(f.ID, "archived"))
	require.Equal(t, f.Bodies[f.Original], b.get(f.Original), "the legacy original is untouched")
}

// F17 (docs/soak-findings.md): the application removes the photo's owner
// between the copies and the swap, the re-planned pass's archive never
// commits (the worker is stopped while the archive waits on the row), and
// the application then gives the photo another owner. The next delivery
// migrates the photo under its new owner and must discard the copies the
// first pass left under the former owner's prefix. On the copy-first path
// (where the server allows it) the photo, having no animations, recorded the
// second part of its plan with no intent, and no stale move came back.
func TestOwnerRemovedThenGivenLeavesNoCopyUnderTheFormerOwner(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	f := b.legacyPhotoWith(false, false)
	pool := b.env.Store.Pool()
	newOwner := uuid.NewString()
	var (
		once   sync.Once
		locked = make(chan struct{})
		tx     pgx.Tx
	)
	hooks := worker.Hooks{BeforeSwap: func(hctx context.Context, photoID string) (err error) {
		once.Do(func() {
			if _, err = pool.Exec(hctx, `UPDATE photos SET owner_id = NULL WHERE id = $1`, photoID); err != nil {
				return
			}
			// The row stays locked, so that the next pass's archive waits
			// until the worker is stopped.
			if tx, err = pool.Begin(ctx); err != nil {
				return
			}
			if _, err = tx.Exec(ctx, `SELECT 1 FROM photos WHERE id = $1 FOR UPDATE`, photoID); err != nil {
				return
			}
			close(locked)
		})
		return err
	}}
	b.send(f.ID, "run-1")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- worker.SetHooks(b.worker(cfg()), hooks).Run(runCtx) }()
	select {
	case <-locked:
	case <-time.After(time.Minute):
		t.Fatal("the first pass never reached its swap")
	}
	time.Sleep(time.Second) // the second pass's archive waits on the row
	stop()
	require.NoError(t, <-done)
	_, err := tx.Exec(ctx, `UPDATE photos SET owner_id = $2 WHERE id = $1`, f.ID, newOwner)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	formerKeys := b.usersKeys()
	require.NotEmpty(t, formerKeys, "the first pass's copies under the former owner, before the redelivery")

	b.drain(b.worker(cfg()))
	p := b.env.Photo(t, f.ID)
	require.Equal(t, keylayout.OriginalKey(newOwner, f.ID, "png"), p.Original)
	for _, k := range b.usersKeys() {
		require.True(t, strings.HasPrefix(k, keylayout.UserPrefix(newOwner)), "%s is outside the new owner's prefix", k)
	}
}
