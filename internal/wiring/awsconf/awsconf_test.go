package awsconf_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/wiring/awsconf"
)

// Case 10: every throttling response is counted, per operation: a 503 on
// HEAD carries no body (the SDK sees ServiceUnavailable, not SlowDown), and a
// 503 SlowDown on a PUT carries S3's XML; both count, retried or not.
func TestEveryThrottleIsCountedPerOperation(t *testing.T) {
	var heads, puts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodHead:
			if heads.Add(1) <= 3 {
				w.WriteHeader(http.StatusServiceUnavailable) // a HEAD has no body
				return
			}
			w.Header().Set("Content-Length", "0")
			w.Header().Set("ETag", `"e"`)
			w.WriteHeader(http.StatusOK)
		case http.MethodPut:
			if puts.Add(1) <= 2 {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
				return
			}
			w.Header().Set("ETag", `"e"`)
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(srv.Close)
	var mu sync.Mutex
	counted := map[string]int{}
	o := awsconf.Options{Region: "us-east-1", PathStyle: true, MaxAttempts: 5, OnThrottle: func(op string) {
		mu.Lock()
		defer mu.Unlock()
		counted[op]++
	}}
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	cfg, err := awsconf.Load(context.Background(), o)
	require.NoError(t, err)
	client := s3.NewFromConfig(cfg, func(so *s3.Options) { so.BaseEndpoint = aws.String(srv.URL); so.UsePathStyle = true })
	ctx := context.Background()
	_, err = client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	require.NoError(t, err, "retried until it succeeded")
	_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"HeadObject": 3, "PutObject": 2}, counted)
}

// A throttled attempt is retried after the same short backoff as any other:
// the SDK's own backoff waits up to a second for SlowDown, while the fleet's
// pacing (internal/pipeline/s3limit) already governs the rate.
func TestBackoffDoesNotWaitASecondForAThrottle(t *testing.T) {
	b := awsconf.Backoff{Base: 50 * time.Millisecond, Max: 20 * time.Second}
	throttle := &smithy.GenericAPIError{Code: "SlowDown"}
	for attempt, limit := range map[int]time.Duration{1: 50 * time.Millisecond, 2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 12: 20 * time.Second, 100: 20 * time.Second} {
		for range 200 {
			d, err := b.BackoffDelay(attempt, throttle)
			require.NoError(t, err)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, limit, "attempt %d", attempt)
		}
	}
}
