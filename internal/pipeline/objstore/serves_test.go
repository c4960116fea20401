package objstore_test

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// TestServesCopiesTellsAPartialOutage asks the test's S3 server, through the
// fault proxy, whether it serves copies: yes while nothing fails, and no while
// every CopyObject, or every UploadPartCopy, fails (503 SlowDown, a reset
// connection) although every read still answers. The probe writes nothing.
func TestServesCopiesTellsAPartialOutage(t *testing.T) {
	t.Parallel()
	base, bucket := testenv.NewBucket(t)
	proxy, err := faultproxy.New(os.Getenv("AWS_ENDPOINT_URL_S3"), faultproxy.Plan{}, 18)
	require.NoError(t, err)
	require.NoError(t, proxy.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = proxy.Close() })
	client := s3.New(base.Options(), func(o *s3.Options) {
		o.BaseEndpoint = func(s string) *string { return &s }(proxy.URL())
		o.RetryMaxAttempts = 1
	})
	st := objstore.New(client, bucket, objstore.Options{})
	ctx := context.Background()
	const missing = "users/.keymigrate-readyz"

	require.NoError(t, st.ServesCopies(ctx, missing), "a server that serves copies refuses a copy of nothing")
	for _, c := range []struct {
		name  string
		rates faultproxy.Rates
	}{
		{"CopyObject 503", faultproxy.Rates{SlowDown: 1, Ops: []faultproxy.Op{faultproxy.OpCopyObject}}},
		{"CopyObject reset", faultproxy.Rates{ResetBefore: 1, Ops: []faultproxy.Op{faultproxy.OpCopyObject}}},
		{"UploadPartCopy 503", faultproxy.Rates{SlowDown: 1, Ops: []faultproxy.Op{faultproxy.OpUploadPartCopy}}},
		{"UploadPartCopy reset", faultproxy.Rates{ResetBefore: 1, Ops: []faultproxy.Op{faultproxy.OpUploadPartCopy}}},
	} {
		proxy.SetPlan(faultproxy.Plan{Base: c.rates})
		_, err := st.Exists(ctx, missing)
		require.NoError(t, err, "%s: reads still answer", c.name)
		require.Error(t, st.ServesCopies(ctx, missing), "%s: copies are not served", c.name)
	}
	proxy.SetPlan(faultproxy.Plan{})
	require.NoError(t, st.ServesCopies(ctx, missing), "copies served again")

	keys, err := st.List(ctx, "")
	require.NoError(t, err)
	require.Empty(t, keys, "the probe wrote nothing")
	c := proxy.Counts()
	require.Positive(t, c.Requests[faultproxy.OpCopyObject])
	require.Positive(t, c.Requests[faultproxy.OpUploadPartCopy])
}
