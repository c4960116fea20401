package faultproxy

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// EnforceCopyIfNoneMatch wraps next (a proxy to an S3 server that ignores the
// condition, as versitygw does) so that a CopyObject with If-None-Match: *
// onto an existing key is refused with 412 PreconditionFailed, as S3 refuses
// it: the worker then takes S3's conditional-copy path. exists reports
// whether bucket/key exists, read from the server directly (S3 checks the
// condition inside the one request); refused, if not nil, is called for each
// copy refused. Path-style requests only (/bucket/key), as every local client
// sends them. The worker tests and the bench's --enforce-conditional-copy
// share it.
func EnforceCopyIfNoneMatch(next http.Handler, exists func(ctx context.Context, bucket, key string) bool, refused func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" && r.Header.Get("If-None-Match") == "*" {
			if parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2); len(parts) == 2 {
				key, err := url.PathUnescape(parts[1])
				if err != nil {
					key = parts[1]
				}
				if exists(r.Context(), parts[0], key) {
					if refused != nil {
						refused()
					}
					w.WriteHeader(http.StatusPreconditionFailed)
					_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>`))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
