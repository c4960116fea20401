package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	cases := []struct {
		method, target string
		copySource     bool
		want           faultproxy.Op
	}{
		{"GET", "/", false, faultproxy.OpListBuckets},
		{"PUT", "/b", false, faultproxy.OpCreateBucket},
		{"HEAD", "/b", false, faultproxy.OpHeadBucket},
		{"GET", "/b?list-type=2&prefix=users%2F", false, faultproxy.OpListObjectsV2},
		{"GET", "/b/?list-type=2", false, faultproxy.OpListObjectsV2},
		{"GET", "/b?prefix=a", false, faultproxy.OpListObjects},
		{"GET", "/b?uploads", false, faultproxy.OpListMultipartUploads},
		{"GET", "/b?location", false, faultproxy.OpGetBucketConfig},
		{"POST", "/b?delete", false, faultproxy.OpDeleteObjects},
		{"POST", "/b", false, faultproxy.OpPostObject},
		{"GET", "/b/uploaded/j.jpg", false, faultproxy.OpGetObject},
		{"HEAD", "/b/uploaded/j.jpg", false, faultproxy.OpHeadObject},
		{"PUT", "/b/users/1/thumbs/2.jpg", false, faultproxy.OpPutObject},
		{"PUT", "/b/users/1/thumbs/2.jpg", true, faultproxy.OpCopyObject},
		{"PUT", "/b/k?partNumber=1&uploadId=u", true, faultproxy.OpUploadPartCopy},
		{"PUT", "/b/k?partNumber=1&uploadId=u", false, faultproxy.OpUploadPart},
		{"PUT", "/b/k?tagging", false, faultproxy.OpPutObjectTagging},
		{"GET", "/b/k?tagging", false, faultproxy.OpGetObjectTagging},
		{"GET", "/b/k?acl", false, faultproxy.OpGetObjectAcl},
		{"PUT", "/b/k?acl", false, faultproxy.OpPutObjectAcl},
		{"POST", "/b/k?uploads", false, faultproxy.OpCreateMultipartUpload},
		{"POST", "/b/k?uploadId=u", false, faultproxy.OpCompleteMultipartUpload},
		{"DELETE", "/b/k?uploadId=u", false, faultproxy.OpAbortMultipartUpload},
		{"GET", "/b/k?uploadId=u", false, faultproxy.OpListParts},
		{"DELETE", "/b/k", false, faultproxy.OpDeleteObject},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.target, nil)
		if c.copySource {
			r.Header.Set("X-Amz-Copy-Source", "/b/src")
		}
		require.Equal(t, c.want, faultproxy.Classify(r), "%s %s copy=%v", c.method, c.target, c.copySource)
	}
	require.True(t, faultproxy.OpCopyObject.CanFailIn200())
	require.True(t, faultproxy.OpCompleteMultipartUpload.CanFailIn200())
	require.False(t, faultproxy.OpPutObject.CanFailIn200())
}

// fakeS3 is a tiny path-style S3: it answers HEAD, PUT and CopyObject and
// counts what reached it.
type fakeS3 struct {
	mu   sync.Mutex
	seen map[faultproxy.Op]int
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := faultproxy.Classify(r)
	_, _ = io.Copy(io.Discard, r.Body)
	f.mu.Lock()
	f.seen[op]++
	f.mu.Unlock()
	w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
	switch op {
	case faultproxy.OpCopyObject:
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><CopyObjectResult><ETag>"0123456789abcdef0123456789abcdef"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></CopyObjectResult>`)
	case faultproxy.OpHeadObject:
		w.Header().Set("Content-Length", "3")
		w.Header().Set("Content-Type", "text/plain")
	}
}

func (f *fakeS3) count(op faultproxy.Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[op]
}

type bundle struct {
	backend *fakeS3
	proxy   *faultproxy.Proxy
	s3      *s3.Client
}

func setup(t *testing.T, plan faultproxy.Plan, attempts int) *bundle {
	t.Helper()
	t.Parallel()
	backend := &fakeS3{seen: map[faultproxy.Op]int{}}
	srv := httptest.NewServer(backend)
	t.Cleanup(srv.Close)
	p, err := faultproxy.New(srv.URL, plan, 1)
	require.NoError(t, err)
	require.NoError(t, p.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = p.Close() })
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.MaxBackoff = 10 * time.Millisecond
			})
		},
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(p.URL())
		o.UsePathStyle = true
	})
	return &bundle{backend: backend, proxy: p, s3: client}
}

func (b *bundle) head(ctx context.Context) error {
	_, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	return err
}

func (b *bundle) put(ctx context.Context) error {
	_, err := b.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), Body: bytes.NewReader([]byte("abc"))})
	return err
}

func (b *bundle) copy(ctx context.Context) error {
	_, err := b.s3.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("b"), Key: aws.String("dst"), CopySource: aws.String("b/src")})
	return err
}

func TestSlowDownOnceIsRetriedBySDK(t *testing.T) {
	b := setup(t, faultproxy.Plan{Base: faultproxy.Rates{SlowDown: 1}, MaxFaults: 1}, 3)
	require.NoError(t, b.put(context.Background()))
	require.Equal(t, 1, b.backend.count(faultproxy.OpPutObject), "the retry reached the server once")
	c := b.proxy.Counts()
	require.EqualValues(t, 2, c.Requests[faultproxy.OpPutObject])
	require.EqualValues(t, 1, c.Faults[faultproxy.SlowDown])
	require.EqualValues(t, 1, c.ByOp[faultproxy.OpPutObject][faultproxy.SlowDown])
}

func TestSlowDownIsS3sErrorDocument(t *testing.T) {
	b := setup(t, faultproxy.Plan{Base: faultproxy.Rates{SlowDown: 1}}, 1)
	err := b.put(context.Background())
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, "SlowDown", ae.ErrorCode())
	// HEAD answers carry no body: the client sees a bare 503.
	err = b.head(context.Background())
	require.ErrorContains(t, err, "503")
	require.Zero(t, b.backend.count(faultproxy.OpHeadObject))
}

func TestErrorIn200OnCopyObjectIsAnError(t *testing.T) {
	b := setup(t, faultproxy.Plan{Base: faultproxy.Rates{ErrorIn200: 1}}, 1)
	err := b.copy(context.Background())
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "a 200 carrying <Error> is surfaced as an error: %v", err)
	require.Equal(t, "InternalError", ae.ErrorCode())
	require.Zero(t, b.backend.count(faultproxy.OpCopyObject), "the failed copy did not happen")
	// Only the operations S3 documents are failed that way.
	require.NoError(t, b.put(context.Background()))
	require.EqualValues(t, 1, b.proxy.Counts().Faults[faultproxy.ErrorIn200])
}

func TestErrorIn200OnceIsRetriedBySDK(t *testing.T) {
	b := setup(t, faultproxy.Plan{Base: faultproxy.Rates{ErrorIn200: 1}, MaxFaults: 1}, 3)
	require.NoError(t, b.copy(context.Background()))
	require.Equal(t, 1, b.backend.count(faultproxy.OpCopyObject))
}

func TestResetAfterExecutesThenLosesTheAnswer(t *testing.T) {
	b := setup(t, faultproxy.Plan{Base: faultproxy.Rates{ResetAfter: 1}, MaxFaults: 1}, 3)
	require.NoError(t, b.put(context.Background()))
	require.Equal(t, 2, b.backend.count(faultproxy.OpPutObject), "executed, answer lost, retried")
	require.EqualValues(t, 1, b.proxy.Counts().Faults[faultproxy.ResetAfter])
}

func TestResetBeforeNeverReachesTheServer(t *testing.T) {
	b := setup(t, faultproxy.Plan{Base: faultproxy.Rates{ResetBefore: 1}}, 2)
	err := b.head(context.Background())
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "EOF"), "%v", err)
	require.Zero(t, b.backend.count(faultproxy.OpHeadObject))
}

func TestInternalErrorAndLatency(t *testing.T) {
	b := setup(t, faultproxy.Plan{Base: faultproxy.Rates{InternalError: 1, Latency: 1, LatencyMin: 50 * time.Millisecond, LatencyMax: 60 * time.Millisecond}, MaxFaults: 1}, 3)
	start := time.Now()
	require.NoError(t, b.head(context.Background()))
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "both attempts were delayed")
	c := b.proxy.Counts()
	require.EqualValues(t, 1, c.Faults[faultproxy.InternalError])
	require.EqualValues(t, 2, c.Faults[faultproxy.Latency])
}

func TestWindowsAndOps(t *testing.T) {
	b := setup(t, faultproxy.Plan{Windows: []faultproxy.Window{
		{Name: "later", Start: time.Hour, End: 2 * time.Hour, Rates: faultproxy.Rates{SlowDown: 1}},
		{Name: "now, copies only", Start: 0, End: time.Hour, Rates: faultproxy.Rates{InternalError: 1, Ops: []faultproxy.Op{faultproxy.OpCopyObject}}},
	}}, 1)
	ctx := context.Background()
	require.NoError(t, b.put(ctx), "the SlowDown window has not started; the active one is for copies")
	require.Error(t, b.copy(ctx))
	b.proxy.SetEnabled(false)
	require.NoError(t, b.copy(ctx), "disabled: a plain proxy")
	c := b.proxy.Counts()
	require.EqualValues(t, 1, c.TotalFaults())
	require.EqualValues(t, 3, c.Total())
}

// A hard limit answers SlowDown to what exceeds it, and only that: requests
// sent far faster than the limit get the bucket's burst and then about Limit
// per second through, the rest SlowDown; the refused take no token.
func TestLimitAnswersSlowDownAboveTheRate(t *testing.T) {
	const limit, burst = 20.0, 4
	b := setup(t, faultproxy.Plan{Base: faultproxy.Rates{Limit: limit, LimitBurst: burst}}, 1)
	ctx := context.Background()
	start := time.Now()
	var ok, slow int
	for time.Since(start) < 500*time.Millisecond || ok+slow < 60 {
		err := b.put(ctx)
		var ae smithy.APIError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &ae) && ae.ErrorCode() == "SlowDown":
			slow++
		default:
			t.Fatalf("want SlowDown, got %v", err)
		}
	}
	elapsed := time.Since(start).Seconds()
	// At most the burst plus what the bucket refilled; at least the burst.
	require.GreaterOrEqual(t, ok, burst)
	require.LessOrEqual(t, float64(ok), burst+limit*elapsed+1, "%d through in %.2fs", ok, elapsed)
	require.Positive(t, slow, "a loop without pauses sends more than the burst and 20/s")
	c := b.proxy.Counts()
	require.EqualValues(t, slow, c.Faults[faultproxy.SlowDown])
	require.EqualValues(t, ok, c.Forwarded())
	require.Equal(t, ok, b.backend.count(faultproxy.OpPutObject), "refused requests never reach the server")

	// A new plan lifts it at once.
	b.proxy.SetPlan(faultproxy.Plan{})
	for range 3 * burst {
		require.NoError(t, b.put(ctx))
	}
}

// A limit in a window applies only inside it and only to its operations; the
// default burst is a tenth of a second's worth.
func TestLimitInAWindowForSomeOperations(t *testing.T) {
	b := setup(t, faultproxy.Plan{Windows: []faultproxy.Window{
		{Name: "copies limited", Start: 0, End: time.Hour, Rates: faultproxy.Rates{Limit: 2, Ops: []faultproxy.Op{faultproxy.OpCopyObject}}},
		{Name: "later", Start: time.Hour, End: 2 * time.Hour, Rates: faultproxy.Rates{Limit: 1}},
	}}, 1)
	ctx := context.Background()
	require.NoError(t, b.copy(ctx), "the bucket starts with one token (2/s ÷ 10, at least 1)")
	require.Error(t, b.copy(ctx), "and is empty for the next 500 ms")
	for range 5 {
		require.NoError(t, b.put(ctx), "other operations are not limited, and the later window has not begun")
	}
	time.Sleep(600 * time.Millisecond)
	require.NoError(t, b.copy(ctx), "refilled")
	require.EqualValues(t, 1, b.proxy.Counts().Faults[faultproxy.SlowDown])
}
