package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
)

// enforcer sits in front of the fault proxy and enforces If-None-Match: * on
// CopyObject, as S3 does and versitygw does not (faultproxy.EnforceCopyIfNoneMatch,
// as a process-long server), so that a bench measures the
// worker's conditional-copy path: the "S3" row of docs/performance.md's
// round-trips table. Its existence check reads the server directly (no added
// latency), as S3 checks the condition inside the one request; a refused
// copy is answered without the fault proxy's latency (it is rare in a bench:
// only a redelivered photo's copy is refused).
type enforcer struct {
	srv    *http.Server
	ln     net.Listener
	direct *s3.Client
}

func newEnforcer(upstream string, direct *s3.Client) (*enforcer, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("enforcer: upstream %q: %w", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("enforcer: listen: %w", err)
	}
	e := &enforcer{ln: ln, direct: direct}
	exists := func(ctx context.Context, bucket, key string) bool {
		_, err := e.direct.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		return err == nil
	}
	e.srv = &http.Server{ReadHeaderTimeout: time.Minute,
		Handler: faultproxy.EnforceCopyIfNoneMatch(httputil.NewSingleHostReverseProxy(u), exists, nil)}
	go func() { _ = e.srv.Serve(ln) }()
	return e, nil
}

func (e *enforcer) URL() string { return "http://" + e.ln.Addr().String() }

func (e *enforcer) close() {
	if err := e.srv.Shutdown(context.Background()); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = e.srv.Close()
	}
}
