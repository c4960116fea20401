package worker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/worker"
)

// TestAPhotoWithoutMetadataIsMigratedWithoutIt migrates a photo that has no
// meta/{job_id}.json. On the copy-first path its metadata is read (HEAD)
// with the listing of the animations, not copied first: the 404 means no
// move, no intent (the ledger holds no row for it, not even a retired one)
// and no CopyObject of it (a copy of a missing metadata answered NoSuchKey,
// a failed COPY priced at 12.5 HEADs, issue 20). verify then finds nothing
// wrong, and cleanup deletes exactly the four moved legacy objects.
func TestAPhotoWithoutMetadataIsMigratedWithoutIt(t *testing.T) {
	for _, enforced := range []bool{true, false} {
		name := "destination read first"
		if enforced {
			name = "conditional copies enforced"
		}
		t.Run(name, func(t *testing.T) {
			b := setup(t, testenv.Options{})
			ctx := context.Background()
			// Every CopyObject's destination, as the server sees it.
			var (
				mu     sync.Mutex
				copied []string
			)
			upstream := os.Getenv("AWS_ENDPOINT_URL_S3")
			if enforced {
				srv, _ := enforcingProxy(t, b)
				upstream = srv.URL
			}
			u, err := url.Parse(upstream)
			require.NoError(t, err)
			rp := httputil.NewSingleHostReverseProxy(u)
			watch := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" {
					mu.Lock()
					copied = append(copied, strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[1])
					mu.Unlock()
				}
				rp.ServeHTTP(w, r)
			}))
			t.Cleanup(watch.Close)
			objects := objstore.New(s3.NewFromConfig(b.env.AWS, func(o *s3.Options) {
				o.BaseEndpoint = aws.String(watch.URL)
				o.UsePathStyle = true
			}), b.env.Objects.Bucket(), objstore.Options{})
			b.drain(worker.New(b.env.Store, objects, b.env.Queue, b.env.DLQ, b.log, cfg())) // the probe
			mu.Lock()
			copied = nil
			mu.Unlock()

			f := b.legacyPhotoWith(false, true)
			b.send(f.ID, "run-1")
			w := worker.New(b.env.Store, objects, b.env.Queue, b.env.DLQ, b.log, cfg())
			b.drain(w)
			b.requireMigrated(f)
			b.queueEmpty()
			require.Empty(t, b.dlqMessages())
			require.EqualValues(t, 1, w.Stats().Migrated)
			require.EqualValues(t, 4, w.Stats().ObjectsCopied)

			metaNew := keylayout.MetadataKey(f.Owner, f.ID)
			ok, err := b.env.Objects.Exists(ctx, metaNew)
			require.NoError(t, err)
			require.False(t, ok, "no metadata copy")
			open, err := b.env.Store.ObjectMoveListOpen(ctx, f.ID)
			require.NoError(t, err)
			require.Empty(t, open, "no open move left")
			for _, o := range ledgertest.ObjectMoves(t, b.env.Store) {
				require.NotEqual(t, metaNew, o.NewKey, "no intent recorded for a metadata that does not exist: %+v", o)
			}
			mu.Lock()
			require.Len(t, copied, 4, "one CopyObject per object that exists: %v", copied)
			require.NotContains(t, copied, metaNew, "no copy of a metadata that does not exist")
			mu.Unlock()
			committed, err := b.env.Store.ObjectMoveListOfPhoto(ctx, f.ID)
			require.NoError(t, err)
			require.Len(t, committed, 4)
			for _, o := range committed {
				require.NotEqual(t, metaNew, o.NewKey, "no metadata move committed")
			}

			r, err := verify.Run(ctx, b.env.Store, b.env.Objects, verify.Options{Deep: true})
			require.NoError(t, err)
			require.True(t, r.OK(), "%+v", r.Problems)
			require.Zero(t, r.RequeueCount, "nothing left unmoved")

			rep, err := cleanup.Run(ctx, b.env.Store, b.env.Objects, cleanup.Options{Grace: 0})
			require.NoError(t, err)
			require.EqualValues(t, 4, rep.Deleted, "exactly the moved legacy objects: %+v", rep)
			for _, k := range f.legacyKeys() {
				ok, err := b.env.Objects.Exists(ctx, k)
				require.NoError(t, err)
				require.False(t, ok, "legacy %s cleaned up", k)
			}
			r, err = verify.Run(ctx, b.env.Store, b.env.Objects, verify.Options{Deep: true})
			require.NoError(t, err)
			require.True(t, r.OK(), "after cleanup: %+v", r.Problems)
		})
	}
}
