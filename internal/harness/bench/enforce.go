package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// enforcer sits in front of the fault proxy and enforces If-None-Match: * on
// CopyObject, as S3 does and versitygw does not (the worker tests'
// enforcingProxy, as a process-long server), so that a bench measures the
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
	proxy := httputil.NewSingleHostReverseProxy(u)
	e.srv = &http.Server{ReadHeaderTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" && r.Header.Get("If-None-Match") == "*" {
			// Path style: /bucket/key.
			if parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2); len(parts) == 2 {
				key, err := url.PathUnescape(parts[1])
				if err != nil {
					key = parts[1]
				}
				if _, err := e.direct.HeadObject(r.Context(), &s3.HeadObjectInput{Bucket: aws.String(parts[0]), Key: aws.String(key)}); err == nil {
					w.WriteHeader(http.StatusPreconditionFailed)
					_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>`))
					return
				}
			}
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = e.srv.Serve(ln) }()
	return e, nil
}

func (e *enforcer) URL() string { return "http://" + e.ln.Addr().String() }

func (e *enforcer) close() {
	if err := e.srv.Shutdown(context.Background()); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = e.srv.Close()
	}
}
