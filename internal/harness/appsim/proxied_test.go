package appsim

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// A proxied client retries what S3 answers "unavailable" (a 503 SlowDown, a
// refused connection) with backoff on top of the SDK's attempts, and gives up
// with an error Unavailable recognises, which the simulator counts instead of
// calling it a violation; an answer about the object (404, 403) is not
// retried and not "unavailable". A direct client makes its call once.
func TestProxiedClientRetriesUnavailableOnly(t *testing.T) {
	t.Parallel()
	owner, photo := "0f6b7a52-6a0d-4c1e-9d56-1f1c9a6b2f10", "7d3c1e0a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	key := keylayout.ThumbnailKey(owner, photo)
	var status, requests, failFirst atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		code := int(status.Load())
		if n <= failFirst.Load() {
			code = http.StatusServiceUnavailable
		}
		switch code {
		case http.StatusServiceUnavailable:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(code)
			_, _ = w.Write([]byte(`<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
		case http.StatusOK:
			_, _ = w.Write([]byte("bytes"))
		default:
			w.WriteHeader(code)
		}
	}))
	t.Cleanup(srv.Close)
	client := s3.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")}, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		o.UsePathStyle = true
	})
	svc, err := storage.New(client, "bucket", storage.Options{})
	require.NoError(t, err)
	s := New(Config{Seed: 1}, Deps{Storage: svc, Proxied: svc})
	get := func(ctx context.Context) error {
		return s.retryApp(ctx, func() error {
			obj, err := s.store(ctx).GetKey(ctx, owner, key)
			if err == nil {
				obj.Body.Close()
			}
			return err
		})
	}
	proxied := withProxied(context.Background())
	run := func(ctx context.Context, code int, fail int32) (error, int32) {
		status.Store(int32(code))
		failFirst.Store(fail)
		requests.Store(0)
		err := get(ctx)
		return err, requests.Load()
	}

	err, n := run(proxied, http.StatusServiceUnavailable, 0)
	require.Error(t, err)
	require.True(t, Unavailable(err), "%v", err)
	require.Greater(t, n, int32(3), "the application retries beyond the SDK's 3 attempts")

	err, n = run(proxied, http.StatusOK, 5)
	require.NoError(t, err, "a read that answers within the retries succeeds")
	require.Equal(t, int32(6), n)

	err, n = run(proxied, http.StatusNotFound, 0)
	require.ErrorIs(t, err, storage.ErrNotFound)
	require.False(t, Unavailable(err))
	require.Equal(t, int32(1), n, "an answer about the object is not retried")

	err, n = run(proxied, http.StatusForbidden, 0)
	require.Error(t, err)
	require.False(t, Unavailable(err), "%v", err)
	require.Equal(t, int32(1), n)

	err, n = run(context.Background(), http.StatusServiceUnavailable, 0)
	require.Error(t, err)
	require.LessOrEqual(t, n, int32(3), "a direct client makes its call once (the SDK's attempts only)")

	// A refused connection (an outage window) is unavailable too.
	srv.Close()
	require.True(t, Unavailable(get(proxied)))

	require.True(t, ReadUnavailable.Good(), "counted, not a violation")
	require.False(t, ReadUnknown.Good(), "a wrong byte stays a violation")
}

// Which clients go through the proxy is decided by the seed: half of each
// kind, none without a proxied service.
func TestProxiedActorsAreHalfBySeed(t *testing.T) {
	t.Parallel()
	svc := &storage.Service{}
	for _, seed := range []uint64{1, 2} {
		s := New(Config{Seed: seed}, Deps{Proxied: svc})
		n := 0
		for i := range 4 {
			if s.proxiedActor(i) {
				n++
			}
		}
		require.Equal(t, 2, n)
		require.NotEqual(t, s.proxiedActor(0), New(Config{Seed: seed + 1}, Deps{Proxied: svc}).proxiedActor(0))
	}
	require.False(t, New(Config{Seed: 2}, Deps{}).proxiedActor(0))
}
