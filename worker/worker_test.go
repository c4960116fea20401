package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/worker"
)

// testBundle is one test's stack and helpers.
type testBundle struct {
	t   *testing.T
	env *testenv.Env
	log *zap.Logger
}

func setup(t *testing.T, o testenv.Options) *testBundle {
	t.Helper()
	t.Parallel()
	return &testBundle{t: t, env: testenv.New(t, o), log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
}

// cfg is a worker configuration tuned for tests: short polls, quick drains.
func cfg() worker.Config {
	c := worker.DefaultConfig()
	c.Concurrency = 4
	c.WaitTime = time.Second
	c.VisibilityTimeout = 10 * time.Second
	c.RetryMaxElapsed = 2 * time.Second
	c.ShutdownGrace = 5 * time.Second
	c.Drain = true
	return c
}

func (b *testBundle) worker(c worker.Config) *worker.Worker {
	e := b.env
	return worker.New(e.Store, e.Objects, e.Queue, e.DLQ, b.log, c)
}

// drain runs w until the queue is empty.
func (b *testBundle) drain(w *worker.Worker) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(b.t, w.Run(ctx))
	require.NoError(b.t, ctx.Err(), "the worker did not drain in time")
}

// send enqueues a photo as the producer does: recorded in the ledger first
// (if its row exists), then sent.
func (b *testBundle) send(photoID, runID string) {
	b.t.Helper()
	ctx := context.Background()
	if p, err := b.env.Store.PhotoGet(ctx, photoID); err == nil {
		require.NoError(b.t, b.env.Store.PhotoMoveRecordEnqueued(ctx, runID, []ledger.Photo{p}))
	}
	b.sendRaw(photoID, runID)
}

// sendRaw sends a message without the producer's ledger record: a message
// still in the queue from an earlier run, or redriven from the DLQ.
func (b *testBundle) sendRaw(photoID, runID string) {
	b.t.Helper()
	require.NoError(b.t, b.env.Queue.SendBatch(context.Background(), []string{queue.Encode(queue.Message{PhotoID: photoID, RunID: runID})}, 5*time.Second))
}

// fixture is a legacy photo written by legacyPhoto.
type fixture struct {
	ID, Owner, Job                 string
	Original, Processed, Thumbnail string
	Meta, Animation                string
	Bodies                         map[string][]byte
}

func (f fixture) legacyKeys() []string {
	var out []string
	for _, k := range []string{f.Original, f.Processed, f.Thumbnail, f.Meta, f.Animation} {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// legacyPhoto writes a photo with every kind of object in the legacy layout.
func (b *testBundle) legacyPhoto() fixture {
	b.t.Helper()
	return b.legacyPhotoWith(true, true)
}

// legacyPhotoWith writes a photo with its three columns' objects, and its
// metadata and one animation where asked (Meta, Animation "" otherwise).
func (b *testBundle) legacyPhotoWith(meta, animation bool) fixture {
	b.t.Helper()
	f := fixture{ID: uuid.NewString(), Owner: uuid.NewString(), Job: uuid.NewString(), Bodies: map[string][]byte{}}
	f.Original = "uploaded/" + f.Job + ".png"
	f.Processed = "restored/" + f.Job + "/" + uuid.NewString() + ".jpg"
	f.Thumbnail = "thumbnails/" + f.Job + ".jpg"
	if meta {
		f.Meta = "meta/" + f.Job + ".json"
	}
	if animation {
		f.Animation = "animated/" + f.Job + "/" + uuid.NewString() + "_loop.mp4"
	}
	types := map[string]string{f.Original: "image/png", f.Processed: "image/jpeg", f.Thumbnail: "image/jpeg", f.Meta: "application/json", f.Animation: "video/mp4"}
	for _, k := range f.legacyKeys() {
		body := []byte(fmt.Sprintf("%s bytes of %s", k, strings.Repeat("x", 100)))
		f.Bodies[k] = body
		b.env.Put(b.t, k, body, types[k], map[string]string{"camera": "x100v"})
	}
	b.env.InsertPhoto(b.t, f.ID, &f.Owner, f.Original, &f.Processed, &f.Thumbnail)
	return f
}

func (b *testBundle) get(key string) []byte {
	b.t.Helper()
	body, err := b.env.Objects.Get(context.Background(), key)
	require.NoError(b.t, err, key)
	return body
}

// requireMigrated checks a fixture's end state: row swapped to the owner's
// keys, every new object equal to its legacy one, every legacy object kept.
func (b *testBundle) requireMigrated(f fixture) {
	b.t.Helper()
	p := b.env.Photo(b.t, f.ID)
	require.Equal(b.t, keylayout.OriginalKey(f.Owner, f.ID, "png"), p.Original)
	require.Equal(b.t, keylayout.RestoredKey(f.Owner, f.ID, "jpg"), *p.Processed)
	require.Equal(b.t, keylayout.ThumbnailKey(f.Owner, f.ID), *p.Thumbnail)
	newKeys := map[string]string{f.Original: p.Original, f.Processed: *p.Processed, f.Thumbnail: *p.Thumbnail}
	if f.Meta != "" {
		newKeys[f.Meta] = keylayout.MetadataKey(f.Owner, f.ID)
	}
	if f.Animation != "" {
		l, _ := keylayout.ParseLegacy(f.Animation)
		newKeys[f.Animation] = keylayout.AnimationKey(f.Owner, f.ID, l.AnimationID, l.Suffix)
	}
	for old, nk := range newKeys {
		require.Equal(b.t, f.Bodies[old], b.get(nk), "%s -> %s", old, nk)
		require.Equal(b.t, f.Bodies[old], b.get(old), "legacy %s must be kept", old)
	}
}

func (b *testBundle) dlqMessages() []queue.Received {
	b.t.Helper()
	var all []queue.Received
	for {
		msgs, err := b.env.DLQ.Receive(context.Background(), 10, 0, 30*time.Second)
		require.NoError(b.t, err)
		if len(msgs) == 0 {
			return all
		}
		all = append(all, msgs...)
	}
}

func (b *testBundle) queueEmpty() {
	b.t.Helper()
	d, err := b.env.Queue.Depth(context.Background())
	require.NoError(b.t, err)
	require.Zero(b.t, d.Total(), "main queue should be empty: %+v", d)
}

// photoMovesOf is 1 if photoID's ledger row is in state, else 0.
func (b *testBundle) photoMovesOf(photoID, state string) int {
	b.t.Helper()
	return ledgertest.Count(ledgertest.PhotoMoves(b.t, b.env.Store), func(m ledgertest.PhotoMove) bool { return m.PhotoID == photoID && m.State == state })
}

func TestMigratesEveryKindOfObject(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	w := b.worker(cfg())
	b.drain(w)

	b.requireMigrated(f)
	b.queueEmpty()
	require.Empty(t, b.dlqMessages())
	s := w.Stats()
	require.EqualValues(t, 1, s.Migrated)
	require.EqualValues(t, 5, s.ObjectsCopied)
	require.Equal(t, 5, ledgertest.Count(ledgertest.ObjectMoves(t, b.env.Store), func(o ledgertest.ObjectMove) bool {
		return o.PhotoID == f.ID && o.CommittedAt != nil && o.VerifiedAt != nil
	}))
	require.Equal(t, 1, ledgertest.Count(ledgertest.PhotoMoves(t, b.env.Store), func(m ledgertest.PhotoMove) bool {
		return m.PhotoID == f.ID && m.State == "migrated" && m.OldOriginalKey == f.Original
	}))
	// User metadata and content type travel with the copy.
	dst, err := b.env.Objects.Head(context.Background(), keylayout.OriginalKey(f.Owner, f.ID, "png"))
	require.NoError(t, err)
	require.Equal(t, "image/png", dst.ContentType)
	require.Equal(t, map[string]string{"camera": "x100v"}, dst.Metadata)
}

func TestSameMessageTwiceGivesOneSwap(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	b.send(f.ID, "run-1")
	c := cfg()
	c.Concurrency = 1 // one after the other
	w := b.worker(c)
	b.drain(w)

	b.requireMigrated(f)
	s := w.Stats()
	require.EqualValues(t, 1, s.Migrated)
	require.EqualValues(t, 1, s.AlreadyDone)
	require.EqualValues(t, 0, s.DeadLettered+s.Retried)
	require.EqualValues(t, 5, s.ObjectsCopied, "the duplicate copies nothing")
	require.Empty(t, ledgertest.Failures(t, b.env.Store))
	require.Empty(t, b.dlqMessages())
	b.queueEmpty()
}

func TestTwoWorkersSameMessageAtOnce(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	b.send(f.ID, "run-1")

	// Both workers copy and verify, then meet at the swap: both try the
	// compare-and-swap, only one can win.
	var arrived sync.WaitGroup
	arrived.Add(2)
	var swaps atomic.Int32
	c := cfg()
	c.Concurrency = 1
	hooks := worker.Hooks{BeforeSwap: func(ctx context.Context, photoID string) error {
		if swaps.Add(1) <= 2 {
			arrived.Done()
			arrived.Wait()
		}
		return nil
	}}
	w1, w2 := worker.SetHooks(b.worker(c), hooks), worker.SetHooks(b.worker(c), hooks)
	var wg sync.WaitGroup
	for _, w := range []*worker.Worker{w1, w2} {
		wg.Add(1)
		go func() { defer wg.Done(); b.drain(w) }()
	}
	wg.Wait()

	b.requireMigrated(f)
	s1, s2 := w1.Stats(), w2.Stats()
	require.EqualValues(t, 1, s1.Migrated+s2.Migrated, "exactly one swap")
	require.EqualValues(t, 1, s1.AlreadyDone+s2.AlreadyDone, "the loser finds the photo done")
	require.EqualValues(t, 0, s1.DeadLettered+s2.DeadLettered+s1.Retried+s2.Retried, "no error for a duplicate")
	require.Empty(t, ledgertest.Failures(t, b.env.Store))
	require.Empty(t, b.dlqMessages())
	b.queueEmpty()
}

func TestRowChangedBetweenCopyAndSwapIsReplanned(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	// After the worker copied the old restore and before it swaps, the user
	// re-runs the restoration: the app writes a new restore and points the
	// row at it.
	newRestore := "restored/" + f.Job + "/" + uuid.NewString() + ".webp"
	newBody := []byte("the restore the app made meanwhile")
	var once sync.Once
	c := cfg()
	hooks := worker.Hooks{BeforeSwap: func(ctx context.Context, photoID string) (err error) {
		once.Do(func() {
			b.env.Put(t, newRestore, newBody, "image/webp", nil)
			_, err = b.env.Store.Pool().Exec(ctx, `UPDATE photos SET processed_key=$2, status='edited' WHERE id=$1`, photoID, newRestore)
		})
		return err
	}}
	b.send(f.ID, "run-1")
	w := worker.SetHooks(b.worker(c), hooks)
	b.drain(w)

	p := b.env.Photo(t, f.ID)
	require.Equal(t, keylayout.RestoredKey(f.Owner, f.ID, "webp"), *p.Processed, "the app's new restore was migrated")
	require.Equal(t, newBody, b.get(*p.Processed))
	require.Equal(t, "edited", *p.Status, "the app's other change is kept")
	require.Equal(t, keylayout.OriginalKey(f.Owner, f.ID, "png"), p.Original)
	require.EqualValues(t, 1, w.Stats().Migrated)
	require.Equal(t, f.Bodies[f.Processed], b.get(f.Processed), "the old restore is kept")
	require.Empty(t, b.dlqMessages())
}

func TestSourceOverwrittenInPlaceIsCopiedAgain(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	// The app regenerates the thumbnail in place, at the same legacy key,
	// after the worker copied it and before the swap.
	newBody := []byte("the thumbnail the app regenerated")
	var once sync.Once
	c := cfg()
	hooks := worker.Hooks{BeforeSwap: func(ctx context.Context, photoID string) error {
		once.Do(func() { b.env.Put(t, f.Thumbnail, newBody, "image/jpeg", map[string]string{"camera": "x100v"}) })
		return nil
	}}
	b.send(f.ID, "run-1")
	w := worker.SetHooks(b.worker(c), hooks)
	b.drain(w)

	p := b.env.Photo(t, f.ID)
	require.Equal(t, keylayout.ThumbnailKey(f.Owner, f.ID), *p.Thumbnail)
	require.Equal(t, newBody, b.get(*p.Thumbnail), "the row points at the current bytes, not the stale copy")
	require.EqualValues(t, 1, w.Stats().Migrated)
	require.Empty(t, b.dlqMessages())
}

func TestRowMovedByTheAppIsNotOverwritten(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	// Between copy and swap the app itself uploads a new original under the
	// user-scoped layout (Phase 1) and points the row at it.
	appKey := keylayout.OriginalPrefix(f.Owner, f.ID) + "original.webp"
	appBody := []byte("a new original uploaded by the app")
	var once sync.Once
	c := cfg()
	hooks := worker.Hooks{BeforeSwap: func(ctx context.Context, photoID string) (err error) {
		once.Do(func() {
			b.env.Put(t, appKey, appBody, "image/webp", nil)
			_, err = b.env.Store.Pool().Exec(ctx, `UPDATE photos SET original_key=$2 WHERE id=$1`, photoID, appKey)
		})
		return err
	}}
	b.send(f.ID, "run-1")
	b.drain(worker.SetHooks(b.worker(c), hooks))

	p := b.env.Photo(t, f.ID)
	require.Equal(t, appKey, p.Original, "the app's key is kept")
	require.Equal(t, appBody, b.get(appKey))
	require.Equal(t, keylayout.ThumbnailKey(f.Owner, f.ID), *p.Thumbnail, "the rest is still migrated")
	require.Equal(t, f.Bodies[f.Thumbnail], b.get(*p.Thumbnail))
}

func TestMissingSourceGoesToTheDLQ(t *testing.T) {
	b := setup(t, testenv.Options{})
	id, owner := uuid.NewString(), uuid.NewString()
	missing := "uploaded/" + uuid.NewString() + ".jpg"
	b.env.InsertPhoto(t, id, &owner, missing, nil, nil)
	b.send(id, "run-1")
	w := b.worker(cfg())
	b.drain(w)

	dead := b.dlqMessages()
	require.Len(t, dead, 1)
	require.Equal(t, "source_missing", dead[0].Attributes[queue.AttrReason])
	require.Equal(t, id, dead[0].Attributes[queue.AttrPhotoID])
	require.Contains(t, dead[0].Attributes[queue.AttrError], missing)
	require.Equal(t, 1, ledgertest.Count(ledgertest.Failures(t, b.env.Store), func(f ledgertest.Failure) bool {
		return f.PhotoID == id && f.Reason == "source_missing" && f.Permanent
	}))
	require.Equal(t, 1, ledgertest.Count(ledgertest.PhotoMoves(t, b.env.Store), func(m ledgertest.PhotoMove) bool {
		return m.PhotoID == id && m.State == "failed" && m.LastReason == "source_missing"
	}))
	require.Equal(t, missing, b.env.Photo(t, id).Original, "the row is untouched")
	require.EqualValues(t, 1, w.Stats().DeadLettered)
	b.queueEmpty()
}

func TestMalformedMessageGoesToTheDLQ(t *testing.T) {
	b := setup(t, testenv.Options{})
	body := `{"v":1,"photo_id":"../../etc/passwd","run_id":"r"}`
	require.NoError(t, b.env.Queue.SendBatch(context.Background(), []string{body, "not json at all"}, 5*time.Second))
	b.drain(b.worker(cfg()))

	dead := b.dlqMessages()
	require.Len(t, dead, 2)
	for _, m := range dead {
		require.Equal(t, "malformed_message", m.Attributes[queue.AttrReason])
	}
	failures := ledgertest.Failures(t, b.env.Store)
	require.Equal(t, 1, ledgertest.Count(failures, func(f ledgertest.Failure) bool { return f.Reason == "malformed_message" && f.Body == body }))
	require.Equal(t, 2, ledgertest.Count(failures, func(f ledgertest.Failure) bool { return f.Reason == "malformed_message" && f.Permanent }))
	b.queueEmpty()
}

func TestInvalidOwnerAndUnrecognisedKeyGoToTheDLQ(t *testing.T) {
	b := setup(t, testenv.Options{})
	badOwner := "../other-user"
	id1 := uuid.NewString()
	key1 := "uploaded/" + uuid.NewString() + ".jpg"
	b.env.Put(t, key1, []byte("x"), "image/jpeg", nil)
	b.env.InsertPhoto(t, id1, &badOwner, key1, nil, nil)
	id2, owner := uuid.NewString(), uuid.NewString()
	b.env.InsertPhoto(t, id2, &owner, "misc/"+uuid.NewString()+".jpg", nil, nil)
	b.send(id1, "run-1")
	b.send(id2, "run-1")
	b.drain(b.worker(cfg()))

	reasons := map[string]string{}
	for _, m := range b.dlqMessages() {
		reasons[m.Attributes[queue.AttrPhotoID]] = m.Attributes[queue.AttrReason]
	}
	require.Equal(t, map[string]string{id1: "invalid_owner_id", id2: "unrecognised_legacy_key"}, reasons)
	// Nothing was written anywhere under users/.
	keys, err := b.env.Objects.List(context.Background(), "users/")
	require.NoError(t, err)
	require.Empty(t, keys)
}

func TestOwnerlessPhotoIsArchivedNotMoved(t *testing.T) {
	b := setup(t, testenv.Options{})
	id := uuid.NewString()
	key := "uploaded/" + uuid.NewString() + ".jpg"
	b.env.Put(t, key, []byte("orphaned by its user"), "image/jpeg", nil)
	b.env.InsertPhoto(t, id, nil, key, nil, nil)
	b.send(id, "run-1")
	w := b.worker(cfg())
	b.drain(w)

	p := b.env.Photo(t, id)
	require.Equal(t, "archived", *p.Status)
	require.Equal(t, key, p.Original, "keys untouched")
	require.Equal(t, 1, ledgertest.Count(ledgertest.PhotoMoves(t, b.env.Store), func(m ledgertest.PhotoMove) bool {
		return m.PhotoID == id && m.State == "archived" && m.OldStatus != nil && *m.OldStatus == "ready"
	}))
	require.EqualValues(t, 1, w.Stats().Archived)
	keys, err := b.env.Objects.List(context.Background(), "users/")
	require.NoError(t, err)
	require.Empty(t, keys)
}

func TestDestinationWrittenBySomeoneElseIsNotOverwritten(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	// Something other than keymigrate already wrote different bytes where the
	// thumbnail is going.
	foreign := []byte("not keymigrate's")
	b.env.Put(t, keylayout.ThumbnailKey(f.Owner, f.ID), foreign, "image/jpeg", nil)
	b.send(f.ID, "run-1")
	b.drain(b.worker(cfg()))

	dead := b.dlqMessages()
	require.Len(t, dead, 1)
	require.Equal(t, "destination_conflict", dead[0].Attributes[queue.AttrReason])
	require.Equal(t, foreign, b.get(keylayout.ThumbnailKey(f.Owner, f.ID)))
	require.Equal(t, f.Thumbnail, *b.env.Photo(t, f.ID).Thumbnail, "the row still points at the legacy key")
}

func TestMultipartCopyKeepsBytesAndMetadata(t *testing.T) {
	b := setup(t, testenv.Options{Objects: objstore.Options{MultipartThreshold: 5 << 20, PartSize: 5 << 20, PartConcurrency: 2}})
	ctx := context.Background()
	body := make([]byte, 12<<20+3)
	for i := range body {
		body[i] = byte(i*7 + i/4096)
	}
	// One source with a CRC64NVME checksum (compared directly) and one with
	// CRC32 (whose multipart checksum this S3 server reports wrongly, so the
	// worker must fall back to comparing bytes).
	for _, alg := range []string{"CRC64NVME", "CRC32"} {
		t.Run(alg, func(t *testing.T) {
			id, owner, job := uuid.NewString(), uuid.NewString(), uuid.NewString()
			key := "uploaded/" + job + ".heic"
			require.NoError(t, b.env.Objects.Put(ctx, objstore.PutInput{
				Key: key, Body: body, ContentType: "image/heic", Metadata: map[string]string{"camera": "pixel-8", "iso": "100"},
				Tagging: "source=legacy&tier=pro", Checksum: checksumAlg(alg),
			}))
			b.env.InsertPhoto(t, id, &owner, key, nil, nil)
			b.send(id, "run-"+alg)
			w := b.worker(cfg())
			b.drain(w)

			newKey := keylayout.OriginalKey(owner, id, "heic")
			require.Equal(t, newKey, b.env.Photo(t, id).Original)
			require.True(t, bytes.Equal(body, b.get(newKey)), "identical bytes")
			dst, err := b.env.Objects.Head(ctx, newKey)
			require.NoError(t, err)
			require.True(t, dst.Multipart(), "copied part by part (ETag %s)", dst.ETag)
			require.Equal(t, "image/heic", dst.ContentType)
			require.Equal(t, map[string]string{"camera": "pixel-8", "iso": "100"}, dst.Metadata)
			tags, err := b.env.Objects.Tags(ctx, newKey)
			require.NoError(t, err)
			require.Equal(t, map[string]string{"source": "legacy", "tier": "pro"}, tags)
			method := ledgertest.ObjectMoveOf(t, b.env.Store, newKey).VerifyMethod

			if alg == "CRC64NVME" && os.Getenv("KEYMIGRATE_S3") != "minio" {
				require.Equal(t, "checksum:CRC64NVME", method)
			} else {
				// MinIO does not return a full-object CRC64NVME for a copy
				// assembled from part copies either: the bytes are compared.
				require.Equal(t, "bytes", method)
			}
		})
	}
}

func TestSlowCopyIsNotDeliveredToASecondWorker(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	c := cfg()
	c.VisibilityTimeout = 2 * time.Second // the copy below takes three times as long
	c.Concurrency = 1
	started := make(chan struct{})
	var once sync.Once
	hooks := worker.Hooks{AfterCopy: func(ctx context.Context, photoID, newKey string) error {
		var first bool
		once.Do(func() { first = true; close(started) })
		if first {
			select {
			case <-time.After(6 * time.Second):
			case <-ctx.Done():
			}
		}
		return nil
	}}
	w := worker.SetHooks(b.worker(c), hooks)
	done := make(chan struct{})
	go func() { defer close(done); b.drain(w) }()

	// A second consumer polls the same queue for the whole slow copy.
	<-started
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		msgs, err := b.env.Queue.Receive(context.Background(), 10, time.Second, 30*time.Second)
		require.NoError(t, err)
		require.Empty(t, msgs, "the message was handed to a second consumer while the first still worked on it")
	}
	<-done
	b.requireMigrated(f)
	require.EqualValues(t, 1, w.Stats().Migrated)
}

func TestHardStopReleasesTheMessageAndSwapsNothing(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	c := cfg()
	c.Drain = false
	c.ShutdownGrace = 500 * time.Millisecond
	inCopy := make(chan struct{})
	var once sync.Once
	hooks := worker.Hooks{AfterCopy: func(ctx context.Context, photoID, newKey string) error {
		once.Do(func() { close(inCopy) })
		<-ctx.Done() // stuck until the hard stop
		return ctx.Err()
	}}
	w := worker.SetHooks(b.worker(c), hooks)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	<-inCopy
	cancel() // soft stop; the grace period then runs out
	require.NoError(t, <-done)

	require.Equal(t, f.Original, b.env.Photo(t, f.ID).Original, "no swap")
	require.EqualValues(t, 1, w.Stats().Released)
	// Released with visibility 0: it is back at once, not after 10s.
	msgs, err := b.env.Queue.Receive(context.Background(), 10, 2*time.Second, 30*time.Second)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	var m queue.Message
	require.NoError(t, json.Unmarshal([]byte(msgs[0].Body), &m))
	require.Equal(t, f.ID, m.PhotoID)
}

// Case 11: everything S3 keeps with an object travels with its copy, on the
// single-part and on the multipart path, and the verification compares it:
// Cache-Control, Content-Disposition, Content-Encoding, Content-Language,
// Expires and the website redirect location (which MetadataDirective COPY
// does not carry: the copy must set it).
func TestEveryContentHeaderTravelsWithTheCopy(t *testing.T) {
	b := setup(t, testenv.Options{Objects: objstore.Options{MultipartThreshold: 5 << 20, PartSize: 5 << 20}})
	ctx := context.Background()
	expires := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	for name, size := range map[string]int{"single-part": 2048, "multipart": 6<<20 + 1} {
		t.Run(name, func(t *testing.T) {
			id, owner, job := uuid.NewString(), uuid.NewString(), uuid.NewString()
			key := "uploaded/" + job + ".jpg"
			require.NoError(t, b.env.Objects.Put(ctx, objstore.PutInput{
				Key: key, Body: bytes.Repeat([]byte("h"), size), ContentType: "image/jpeg",
				CacheControl: "public, max-age=31536000", ContentDisposition: `inline; filename="beach.jpg"`,
				ContentEncoding: "identity", ContentLanguage: "fr-CH", Expires: &expires,
				WebsiteRedirectLocation: "/photos/beach",
			}))
			b.env.InsertPhoto(t, id, &owner, key, nil, nil)
			b.send(id, "run-1")
			b.drain(b.worker(cfg()))

			newKey := keylayout.OriginalKey(owner, id, "jpg")
			require.Equal(t, newKey, b.env.Photo(t, id).Original)
			src, err := b.env.Objects.Head(ctx, key)
			require.NoError(t, err)
			dst, err := b.env.Objects.Head(ctx, newKey)
			require.NoError(t, err)
			require.Equal(t, name == "multipart", dst.Multipart())
			for _, h := range [][3]string{
				{"Cache-Control", src.CacheControl, dst.CacheControl},
				{"Content-Disposition", src.ContentDisposition, dst.ContentDisposition},
				{"Content-Encoding", src.ContentEncoding, dst.ContentEncoding},
				{"Content-Language", src.ContentLanguage, dst.ContentLanguage},
			} {
				require.NotEmpty(t, h[1], "the source carries %s", h[0])
				require.Equal(t, h[1], h[2], h[0])
			}
			// MinIO does not keep a website redirect location at all (the PUT
			// drops it), so there is nothing to carry there; elsewhere it must
			// travel too.
			if os.Getenv("KEYMIGRATE_S3") != "minio" {
				require.NotEmpty(t, src.WebsiteRedirectLocation, "the source carries its website redirect location")
			}
			require.Equal(t, src.WebsiteRedirectLocation, dst.WebsiteRedirectLocation, "website redirect location")
			require.NotEmpty(t, src.Expires)
			st, _ := http.ParseTime(src.Expires)
			dt, err := http.ParseTime(dst.Expires)
			require.NoError(t, err, "the copy carries Expires")
			require.True(t, st.Equal(dt), "Expires %s, source %s", dst.Expires, src.Expires)
			v := objstore.Compare(src, dst)
			require.True(t, v.Equal || v.NeedBytes, "the verification accepts the copy: %s", v.Reason)
			dst.CacheControl = "no-store"
			require.Contains(t, objstore.Compare(src, dst).Reason, "Cache-Control", "and would refuse a copy that lost a header")
		})
	}
}
