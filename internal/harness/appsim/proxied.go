package appsim

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/cenkalti/backoff/v4"

	"github.com/keymigrate/keymigrate/internal/app/storage"
)

// The application through the S3 fault proxy (issue 18, item 5). Half the
// application's clients — readers and writers alike, which ones decided by
// the seed (proxiedActor) — reach S3 through the same fault proxy and TCP
// outage proxy as the workers (Deps.Proxied), and so suffer the same injected
// faults and outage windows; the other half go straight to the server, so
// that the migration's guarantees are still judged on every read.
//
// A proxied client retries as a real application would: the SDK's own
// retryer (3 attempts), and around each application call a bounded
// exponential backoff (retryApp). What it still cannot do is an outcome, not
// a violation:
//
//   - a read (GetObject, a presigned download, a listing) that fails after
//     its retries with an error that says "unavailable" (a 5xx, a reset or
//     refused connection, the SDK's attempts exhausted) is judged
//     ReadUnavailable and counted per kind (Summary.Proxied);
//   - bytes it did get are judged as every read is: a wrong byte is still a
//     violation.
//
// A write that fails after its retries may or may not have landed (a reset
// after the server executed it, a 200 carrying an error, an SDK retry of a
// request that had landed). The simulator does not guess: it reads the key
// back through the direct StorageService (settleUncertain), which the fault
// proxy does not touch, and keeps the version only if the bytes are there.
// The photo is locked by the writer meanwhile, so no other application write
// of that key can interleave. A compensating removal after a failed write
// (the uploads of a photo whose creation failed, a rewrite given up) is
// retried through the proxy and, if the proxy still refuses, done directly
// and counted (removedDirectly): left behind, those objects would be
// under users/ with no row pointing at them, which users_prefix_exact
// rightly calls a violation, and a real application would sweep them later.
//
// Which writes go through the proxy: creations (Put and presigned POST),
// rewrites of user-scoped keys, added and rewritten animations. The account
// merges, deletions and owner changes stay on the direct path: their
// failure handling reads the model's events, not the key, and routing them
// is future work (docs/soak.md).

type proxiedKey struct{}

// withProxied marks ctx as a proxied client's.
func withProxied(ctx context.Context) context.Context {
	return context.WithValue(ctx, proxiedKey{}, true)
}

// isProxied reports whether ctx is a proxied client's.
func isProxied(ctx context.Context) bool {
	v, _ := ctx.Value(proxiedKey{}).(bool)
	return v
}

// proxiedActor decides, by the seed, whether client i of a kind goes through
// the fault proxy: alternate clients, the first one chosen by the seed's
// parity, so that half of each kind (rounded either way) are proxied.
func (s *Sim) proxiedActor(i int) bool {
	return s.deps.Proxied != nil && (uint64(i)+s.cfg.Seed)%2 == 0
}

// store is the StorageService of the client whose ctx this is.
func (s *Sim) store(ctx context.Context) *storage.Service {
	if isProxied(ctx) && s.deps.Proxied != nil {
		return s.deps.Proxied
	}
	return s.deps.Storage
}

// The application's retry policy around one call, on top of the SDK's:
// up to appRetries more attempts, backing off from 100 ms to 2 s, for at
// most appRetryElapsed.
const (
	appRetries      = 4
	appRetryElapsed = 8 * time.Second
)

// retryApp runs f, and for a proxied client retries it while it fails
// unavailable, as a real application would. A direct client's call is made
// once (as before: the soak judges its failures as they are).
func (s *Sim) retryApp(ctx context.Context, f func() error) error {
	if !isProxied(ctx) {
		return f()
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = appRetryElapsed
	return backoff.Retry(func() error {
		err := f()
		if err != nil && !Unavailable(err) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(backoff.WithMaxRetries(b, appRetries), ctx))
}

// errLanded marks a write that reported a failure but whose bytes were
// found at the key when read back (settleUncertain).
var errLanded = errors.New("write reported a failure but landed")

// errUnavailable marks a presigned download answered with a 5xx.
var errUnavailable = errors.New("S3 unavailable")

// Unavailable reports whether err says S3 could not be reached or refused
// for now (what the fault proxy injects), rather than answering about the
// object: a 5xx or S3's SlowDown / InternalError / ServiceUnavailable, the
// SDK's attempts exhausted, a reset, refused or cut connection. A missing
// object, a refusal by the StorageService, a cancelled context are not.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, storage.ErrNotFound) ||
		errors.Is(err, storage.ErrForbidden) || errors.Is(err, storage.ErrInvalidRequest) {
		return false
	}
	if errors.Is(err, errUnavailable) {
		return true
	}
	var maxAttempts *retry.MaxAttemptsError
	if errors.As(err, &maxAttempts) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed":
			return true
		}
	}
	var resp *awshttp.ResponseError
	if errors.As(err, &resp) && resp.HTTPStatusCode() >= 500 {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE)
}

// removeAbandoned removes what the application uploaded for a write it gave
// up on (see the top of the file): through the client's own path with
// retries, then directly, counted.
func (s *Sim) removeAbandoned(ctx context.Context, f func(*storage.Service) error) {
	ctx = context.WithoutCancel(ctx)
	if err := s.retryApp(ctx, func() error { return f(s.store(ctx)) }); err == nil || !isProxied(ctx) {
		return
	}
	s.stats.note("abandoned_upload_removed_directly")
	_ = f(s.deps.Storage)
}
