package appsim

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// A presigned download is a signed GET of the key at the S3 endpoint; its
// bytes are hashed, a 404 is "found nothing" (storage.ErrNotFound, judged as
// the application's own reads are), any other status a failed read.
func TestDownloadThroughAPresignedURL(t *testing.T) {
	t.Parallel()
	owner, photo := "0f6b7a52-6a0d-4c1e-9d56-1f1c9a6b2f10", "7d3c1e0a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	key := keylayout.ThumbnailKey(owner, photo)
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Query().Get("X-Amz-Signature") == "" || !strings.HasSuffix(r.URL.Path, "/bucket/"+key) {
			http.Error(w, "not a presigned GET of the key", http.StatusBadRequest)
			return
		}
		code := int(status.Load())
		w.WriteHeader(code)
		if code == http.StatusOK {
			_, _ = w.Write([]byte("bytes"))
		}
	}))
	t.Cleanup(srv.Close)
	client := s3.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")}, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		o.UsePathStyle = true
	})
	svc, err := storage.New(client, "bucket", storage.Options{})
	require.NoError(t, err)
	s := New(Config{}, Deps{Storage: svc})
	ctx := context.Background()

	status.Store(http.StatusOK)
	h, err := s.download(ctx, owner, key)
	require.NoError(t, err)
	require.Equal(t, hashOf([]byte("bytes")), h)

	status.Store(http.StatusNotFound)
	_, err = s.download(ctx, owner, key)
	require.True(t, errors.Is(err, storage.ErrNotFound), "%v", err)

	status.Store(http.StatusForbidden)
	_, err = s.download(ctx, owner, key)
	require.Error(t, err)
	require.False(t, errors.Is(err, storage.ErrNotFound), "a refusal is a failed read, not an absent object")

	_, err = s.download(ctx, owner, keylayout.ThumbnailKey("1f6b7a52-6a0d-4c1e-9d56-1f1c9a6b2f10", photo))
	require.Error(t, err, "the application presigns its own user's keys only")
}
