package smoke_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/app/storage/smoke"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
)

// The smoke test `make smoke` runs passes on the real local S3 server, with
// the default 50 MiB limit, and says what it did.
func TestSmokePassesOnTheLocalServer(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	svc, err := storage.New(env.S3, env.Objects.Bucket(), storage.Options{})
	require.NoError(t, err)
	var out bytes.Buffer
	results, err := smoke.Run(context.Background(), svc, smoke.Options{Out: &out})
	require.NoError(t, err)
	t.Log("\n" + out.String())
	require.Len(t, results, 9)
	require.Zero(t, smoke.Failed(results), out.String())
	for _, want := range []string{"PASS   upload with A's policy to A's key", "403 AccessDenied", "400 EntityTooLarge", "expired"} {
		require.Contains(t, out.String(), want)
	}
}

// A server that ignores POST policies (it stores whatever it is sent) must
// make the smoke test fail: every refusal case is reported as unexpected.
func TestSmokeFailsAgainstAServerThatIgnoresPolicies(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true, HTTPClient: srv.Client(),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}, nil
		}),
	})
	svc, err := storage.New(client, "photos", storage.Options{UploadMaxBytes: 1024})
	require.NoError(t, err)
	var out bytes.Buffer
	results, err := smoke.Run(context.Background(), svc, smoke.Options{Out: &out, HTTPClient: srv.Client()})
	require.NoError(t, err)
	failed := map[string]bool{}
	for _, r := range results {
		if !r.OK {
			failed[r.Case] = true
		}
	}
	require.GreaterOrEqual(t, smoke.Failed(results), 5, out.String())
	require.Contains(t, out.String(), "FAIL   same policy, key under B's prefix")
	require.Contains(t, out.String(), "FAIL   file of 1025 bytes, one above the limit")
	require.False(t, failed["StorageService: A asks to presign B's key"], "the service's own refusals do not depend on the server")
}
