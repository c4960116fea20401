package worker_test

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

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// failingAmidCopiesURL is an S3 endpoint that stages the race of a photo's
// parallel copies: the HEAD of missing (the photo's original, which was never
// uploaded) is answered only once the copies to landFirst have landed, and the
// copy to landLate is in flight when the worker is told missing does not
// exist: it reaches the server 300 ms later, and the server carries it out
// whether or not the worker still waits for the answer (as S3 does with a
// request it has received). When the worker learns the photo cannot be
// migrated, two copies are done and one is in flight. The returned wait blocks
// until that last copy has been carried out.
func failingAmidCopiesURL(t *testing.T, missing string, landFirst []string, landLate string) (endpoint string, wait func()) {
	t.Helper()
	upstream, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var mu sync.Mutex
	landed := map[string]bool{}
	allLanded := make(chan struct{})
	told := make(chan struct{})
	var tellOnce sync.Once
	var late sync.WaitGroup
	isCopyTo := func(r *http.Request, key string) bool {
		return r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" && strings.HasSuffix(r.URL.Path, "/"+key)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/"+missing):
			select {
			case <-allLanded:
			case <-time.After(10 * time.Second):
			}
			proxy.ServeHTTP(w, r)
			tellOnce.Do(func() { close(told) })
		case isCopyTo(r, landLate):
			late.Add(1)
			defer late.Done()
			select {
			case <-told:
				time.Sleep(300 * time.Millisecond)
			case <-time.After(10 * time.Second):
			}
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = io.Copy(w, rec.Body)
		default:
			proxy.ServeHTTP(w, r)
			for _, k := range landFirst {
				if isCopyTo(r, k) {
					mu.Lock()
					landed[k] = true
					if len(landed) == len(landFirst) {
						close(allLanded)
					}
					mu.Unlock()
				}
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, late.Wait
}

// DESIGN.md, worker invariant 12: a photo that is dead-lettered leaves no
// copy of ours under users/, even when its objects were being copied in
// parallel at that instant. (Found outside the project: the thumbnail's copy
// landed at the moment the original was found missing, the photo was
// dead-lettered as source_missing 80 ms later, and the copy stayed, pointed
// at by no row.)
func TestDeadLetteredPhotoLeavesNoCopyBehind(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	f := b.legacyPhoto()
	require.NoError(t, b.env.Objects.Delete(ctx, f.Original)) // never uploaded
	endpoint, inFlight := failingAmidCopiesURL(t, f.Original,
		[]string{keylayout.ThumbnailKey(f.Owner, f.ID), keylayout.RestoredKey(f.Owner, f.ID, "jpg")},
		keylayout.MetadataKey(f.Owner, f.ID))
	c := cfg()
	c.ObjectConcurrency = 8 // every object of the photo at once
	b.send(f.ID, "run-1")
	b.drain(b.workerWith(proxyURL(endpoint).store(t, b.env), c))
	inFlight() // the copy in flight when the photo failed has been carried out

	dead := b.dlqMessages()
	require.Len(t, dead, 1)
	require.Equal(t, "source_missing", dead[0].Attributes["keymigrate-reason"])
	require.Empty(t, b.usersKeys(), "a dead-lettered photo leaves nothing under users/")
	require.Equal(t, f.Bodies[f.Thumbnail], b.get(f.Thumbnail), "its legacy objects stay")
}

// A worker killed between a copy and the dead letter leaves the copy and its
// intent in the ledger: the next delivery, which fails the photo again,
// removes it before the message goes to the DLQ.
func TestDeadLetterRemovesTheCopiesOfAKilledAttempt(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	f := b.legacyPhoto()
	require.NoError(t, b.env.Objects.Delete(ctx, f.Original))
	// What the killed attempt left: its intents, and one copy it made but
	// never recorded.
	thumb := keylayout.ThumbnailKey(f.Owner, f.ID)
	_, err := b.env.Store.ObjectMoveRecordIntents(ctx, f.ID, f.Job, []ledger.Intent{
		{Kind: string(keylayout.KindThumbnail), OldKey: f.Thumbnail, NewKey: thumb},
		{Kind: string(keylayout.KindOriginal), OldKey: f.Original, NewKey: keylayout.OriginalKey(f.Owner, f.ID, "png")},
	})
	require.NoError(t, err)
	b.env.Put(t, thumb, f.Bodies[f.Thumbnail], "image/jpeg", map[string]string{"camera": "x100v"})

	b.send(f.ID, "run-1")
	b.drain(b.worker(cfg()))
	dead := b.dlqMessages()
	require.Len(t, dead, 1)
	require.Equal(t, "source_missing", dead[0].Attributes["keymigrate-reason"])
	require.Empty(t, b.usersKeys(), "the killed attempt's copy is gone too")
}

// A photo dead-lettered because the application's bytes sit at one of its
// column's keys (destination_conflict) keeps the application's object, and
// nothing keymigrate copied for its other objects.
func TestDestinationConflictLeavesOnlyTheApplicationsObject(t *testing.T) {
	b := setup(t, testenv.Options{})
	f := b.legacyPhoto()
	thumb := keylayout.ThumbnailKey(f.Owner, f.ID)
	foreign := []byte("a thumbnail the application wrote and never pointed the row at")
	b.env.Put(t, thumb, foreign, "image/jpeg", nil)
	c := cfg()
	c.ObjectConcurrency = 8
	b.send(f.ID, "run-1")
	b.drain(b.worker(c))

	dead := b.dlqMessages()
	require.Len(t, dead, 1)
	require.Equal(t, "destination_conflict", dead[0].Attributes["keymigrate-reason"])
	require.Equal(t, []string{thumb}, b.usersKeys(), "only the application's object is under users/")
	require.Equal(t, foreign, b.get(thumb))
}
