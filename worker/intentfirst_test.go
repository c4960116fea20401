package worker_test

import (
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
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/worker"
)

// TestEveryCopyIsSentAfterItsIntent checks, as each CopyObject arrives at
// the server, that the ledger already holds the intent of its destination
// (the photo's open move): the named objects' intents are recorded before
// the round trip that copies them with the listing, the listed animations'
// and the metadata's (found by a HEAD with the listing) after the listing
// and before their copies. S1's discard claims and generations rest on it,
// and a process killed between a copy and its record leaves a trace of the
// copy only through its intent. No copy is sent of a metadata that does not
// exist, and the one that does is copied pinned to its HEAD's ETag
// (x-amz-copy-source-if-match): no read of its source follows it.
func TestEveryCopyIsSentAfterItsIntent(t *testing.T) {
	b := setup(t, testenv.Options{})
	upstream, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var (
		mu       sync.Mutex
		copies   []string
		missing  []string
		unpinned []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" {
			key := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[1]
			if strings.HasPrefix(key, "users/") {
				o, known, err := b.env.Store.ObjectMoveGetCopy(r.Context(), key)
				mu.Lock()
				copies = append(copies, key)
				if err != nil || !known || o.CommittedAt != nil {
					missing = append(missing, key)
				}
				if strings.Contains(key, "/meta/") && r.Header.Get("X-Amz-Copy-Source-If-Match") == "" {
					unpinned = append(unpinned, key)
				}
				mu.Unlock()
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	client := s3.NewFromConfig(b.env.AWS, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		o.UsePathStyle = true
	})
	objects := objstore.New(client, b.env.Objects.Bucket(), objstore.Options{})
	run := func() { b.drain(worker.New(b.env.Store, objects, b.env.Queue, b.env.DLQ, b.log, cfg())) }
	run() // the probe

	with, without := b.legacyPhoto(), b.legacyPhotoWith(false, true)
	b.send(with.ID, "run-1")
	b.send(without.ID, "run-1")
	mu.Lock()
	copies, missing = nil, nil
	mu.Unlock()
	run()
	b.requireMigrated(with)
	b.requireMigrated(without)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, copies, 9, "a copy per object that exists, five and four: %v", copies)
	require.Empty(t, missing, "copies sent before their intent was recorded")
	require.Empty(t, unpinned, "the metadata's copy is pinned to its HEAD")
	require.Contains(t, copies, keylayout.MetadataKey(with.Owner, with.ID))
}
