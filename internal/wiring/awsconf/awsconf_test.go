package awsconf_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
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

// The region comes from the flag, else the SDK's chain (AWS_REGION,
// AWS_DEFAULT_REGION, the profile's region); with none, Load fails and says
// how to give one: no region is assumed.
func TestRegionFromTheChainOrAClearError(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfgFile := dir + "/config"
	require.NoError(t, os.WriteFile(cfgFile, []byte("[profile eu]\nregion = eu-west-3\n[profile none]\noutput = json\n"), 0o600))
	t.Setenv("AWS_CONFIG_FILE", cfgFile)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")

	t.Setenv("AWS_PROFILE", "eu")
	cfg, err := awsconf.Load(ctx, awsconf.Options{})
	require.NoError(t, err)
	require.Equal(t, "eu-west-3", cfg.Region, "the profile's region, not us-east-1")
	cfg, err = awsconf.Load(ctx, awsconf.Options{Region: "ap-south-1"})
	require.NoError(t, err)
	require.Equal(t, "ap-south-1", cfg.Region, "--region wins")

	t.Setenv("AWS_PROFILE", "none")
	_, err = awsconf.Load(ctx, awsconf.Options{})
	require.ErrorIs(t, err, awsconf.ErrNoRegion)
	require.Contains(t, err.Error(), "--region")
	t.Setenv("AWS_DEFAULT_REGION", "sa-east-1")
	cfg, err = awsconf.Load(ctx, awsconf.Options{})
	require.NoError(t, err)
	require.Equal(t, "sa-east-1", cfg.Region)
}

// With EnvRecordCalls set, every call (once, not per retry) is appended
// with the component, operation and the resources IAM authorises it by.
func TestCallsAreRecorded(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError) // retried: still one call
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	rec := t.TempDir() + "/calls.jsonl"
	t.Setenv(awsconf.EnvRecordCalls, rec)
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	cfg, err := awsconf.Load(context.Background(), awsconf.Options{Region: "us-east-1", Component: "migratectl verify"})
	require.NoError(t, err)
	client := awsconf.S3(cfg, awsconf.Options{PathStyle: true}, func(o *s3.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	_, err = client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("uploaded/j.jpg")})
	require.NoError(t, err)
	raw, err := os.ReadFile(rec)
	require.NoError(t, err)
	require.JSONEq(t, `{"component":"migratectl verify","service":"S3","operation":"HeadObject","bucket":"b","key":"uploaded/j.jpg"}`, strings.TrimSpace(string(raw)))
}
