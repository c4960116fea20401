package worker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/keylayout"
	"github.com/keymigrate/keymigrate/internal/objstore"
	"github.com/keymigrate/keymigrate/internal/testenv"
	"github.com/keymigrate/keymigrate/worker"
)

// enforcingProxy sits in front of the S3 server and enforces If-None-Match: *
// on CopyObject, as S3 does and versitygw v1.8.0 does not, so that the
// worker's conditional-copy path runs against real storage.
func enforcingProxy(t *testing.T, b *testBundle) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	upstream, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" && r.Header.Get("If-None-Match") == "*" {
			// Path style: /bucket/key
			key := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[1]
			if _, err := b.env.Objects.Head(r.Context(), key); err == nil {
				refused.Add(1)
				w.WriteHeader(http.StatusPreconditionFailed)
				_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>`))
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &refused
}

func TestConditionalCopyPath(t *testing.T) {
	b := setup(t, testenv.Options{})
	srv, refused := enforcingProxy(t, b)
	client := s3.NewFromConfig(b.env.AWS, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		o.UsePathStyle = true
	})
	objects := objstore.New(client, b.env.Objects.Bucket(), objstore.Options{})
	check, err := objects.ResolveDestinationCheck(context.Background())
	require.NoError(t, err)
	require.Equal(t, objstore.DestinationConditional, check, "the probe sees the enforced condition")

	mk := func(c worker.Config) *worker.Worker {
		return worker.New(b.env.Store, objects, b.env.Queue, b.env.DLQ, b.log, c)
	}
	// A clean migration goes through.
	f := b.legacyPhoto()
	b.send(f.ID, "run-1")
	b.drain(mk(cfg()))
	b.requireMigrated(f)

	// Foreign bytes at a destination: the copy is refused by the server and the
	// photo dead-lettered, the bytes untouched.
	g := b.legacyPhoto()
	foreign := []byte("written by the app, not by keymigrate")
	b.env.Put(t, keylayout.ThumbnailKey(g.Owner, g.ID), foreign, "image/jpeg", nil)
	before := refused.Load()
	b.send(g.ID, "run-1")
	b.drain(mk(cfg()))
	require.Greater(t, refused.Load(), before, "the server refused the copy")
	dead := b.dlqMessages()
	require.Len(t, dead, 1)
	require.Equal(t, "destination_conflict", dead[0].Attributes["keymigrate-reason"])
	require.Equal(t, foreign, b.get(keylayout.ThumbnailKey(g.Owner, g.ID)))
}

// Case 12: the fleet probes S3 once and remembers the answer, so that a worker
// killed at start-up cannot leave probe objects behind each time.
func TestTheFleetProbesS3Once(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	b.drain(b.worker(cfg()))
	caps, ok, err := b.env.Store.GetS3Capabilities(ctx, b.env.Objects.Bucket())
	require.NoError(t, err)
	require.True(t, ok, "the first worker recorded what it found")
	if os.Getenv("KEYMIGRATE_S3") == "" || os.Getenv("KEYMIGRATE_S3") == "versitygw" {
		// versitygw v1.8.0, as measured: conditional deletes yes, the rest no;
		// its buckets keep no per-object ACLs (BucketOwnerEnforced).
		require.Equal(t, [4]bool{false, true, false, false}, [4]bool{caps.ConditionalCopy, caps.ConditionalDelete, caps.ConditionalBatchDelete, caps.ACLs})
	}
	left, err := b.env.Objects.List(ctx, objstore.ProbePrefix)
	require.NoError(t, err)
	require.Empty(t, left, "the probe removed its objects")

	// A second worker, through a proxy that counts writes, probes nothing.
	upstream, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var writes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	b.drain(b.workerWith(proxyURL(srv.URL).store(t, b.env), cfg()))
	require.Zero(t, writes.Load(), "the second worker wrote nothing to S3")
}
