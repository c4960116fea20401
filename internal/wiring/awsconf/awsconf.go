// Package awsconf builds the AWS SDK configuration and the S3 and SQS clients
// the binaries share, with the HTTP transport and retry behaviour chosen on
// purpose rather than left at the SDK defaults.
package awsconf

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/keymigrate/keymigrate/internal/pipeline/s3limit"
)

// Options tune the clients.
type Options struct {
	// Region, if set, overrides the SDK's chain (AWS_REGION, the profile's
	// region); Load fails when neither names one.
	Region string
	// Component names the calling program in the calls recorded when
	// EnvRecordCalls is set ("worker", "producer", "migratectl status").
	Component string
	// PathStyle addresses buckets as http://host/bucket; local S3 servers need
	// it. It is switched on automatically when AWS_ENDPOINT_URL_S3 is set.
	PathStyle bool
	// MaxConns bounds idle connections kept per host; set it to at least the
	// number of concurrent requests so connections are reused, not re-dialled.
	MaxConns int
	// MaxAttempts is the SDK's own per-request attempt limit (default 5).
	MaxAttempts int
	// OnThrottle, if set, is called with the operation's name for every
	// response that asks the client to slow down, whether or not it is
	// retried: any 503 (a HEAD's has no body, so the SDK sees only
	// ServiceUnavailable) and the throttling error codes.
	OnThrottle func(operation string)
	// Limiter, if set, paces every S3 attempt and learns from its outcome
	// (internal/pipeline/s3limit); S3 clients only.
	Limiter *s3limit.Limiter
}

// Load builds the SDK configuration from the default credential chain.
//
// The retryer is the SDK's standard mode (exponential backoff with jitter) with
// its retry-quota token bucket switched off: the bucket holds 500 tokens shared
// by every call, a retry takes some, and under sustained S3 503 SlowDown a busy
// worker empties it within seconds; from then on every throttled call fails at
// once instead of backing off. The SDK's adaptive mode is not used either: its
// client-side limiter halves the send rate at every throttling response, and 5%
// random SlowDown cut a fleet to a sixth of its rate. Pacing under throttling
// is internal/pipeline/s3limit's job (Options.Limiter). For the same reason a throttled
// attempt is retried after the same short jittered backoff as any other
// (throttleAwareBackoff): the SDK waits up to a second, doubling, before
// retrying a SlowDown, which with 5% random SlowDown stretches a photo's many
// requests by that second while the pacing already keeps the rate in check.
//
// The HTTP client is built with awshttp.NewBuildableClient, not a plain
// *http.Client: with a plain client, LoadDefaultConfig panics when AWS_CA_BUNDLE
// is set because it cannot add the bundle to an unknown transport.
func Load(ctx context.Context, o Options) (aws.Config, error) {
	if o.MaxConns <= 0 {
		o.MaxConns = 64
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = o.MaxConns * 2
		t.MaxIdleConnsPerHost = o.MaxConns
		t.IdleConnTimeout = 90 * time.Second
	})
	retryer := func() aws.Retryer {
		return retry.NewStandard(func(s *retry.StandardOptions) {
			s.MaxAttempts = o.MaxAttempts
			s.MaxBackoff = 20 * time.Second
			s.Backoff = Backoff{Base: 50 * time.Millisecond, Max: s.MaxBackoff}
			s.RateLimiter = ratelimit.None
		})
	}
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(retryer),
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	var apiOptions []func(*middleware.Stack) error
	if o.OnThrottle != nil {
		apiOptions = append(apiOptions, countThrottles(o.OnThrottle))
	}
	if path := os.Getenv(EnvRecordCalls); path != "" {
		rec, err := RecordCalls(path, o.Component)
		if err != nil {
			return aws.Config{}, err
		}
		apiOptions = append(apiOptions, rec)
	}
	if len(apiOptions) > 0 {
		opts = append(opts, config.WithAPIOptions(apiOptions))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, ErrNoRegion
	}
	return cfg, nil
}

// ErrNoRegion is Load's error when neither the flag nor the SDK's chain
// (AWS_REGION, AWS_DEFAULT_REGION, the profile's region) names a region: the
// SDK would otherwise fail at the first call, and no region is assumed.
var ErrNoRegion = errors.New("no AWS region configured: pass --region, set AWS_REGION, or set region in the AWS profile (AWS_PROFILE)")

// S3 builds the S3 client.
func S3(cfg aws.Config, o Options, optFns ...func(*s3.Options)) *s3.Client {
	pathStyle := o.PathStyle || os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != ""
	fns := []func(*s3.Options){func(so *s3.Options) {
		so.UsePathStyle = pathStyle
		// A GET of an object stored without a checksum (every legacy object
		// written before checksums were asked for; MinIO's too) is not an
		// event: the SDK would print a DEBUG line to stderr for each one,
		// outside the structured log.
		so.DisableLogOutputChecksumValidationSkipped = true
		if o.Limiter != nil {
			so.APIOptions = append(so.APIOptions, pace(o.Limiter))
		}
	}}
	fns = append(fns, optFns...)
	// Last, so that it wraps whatever resolver the other functions chose.
	fns = append(fns, cacheEndpoints)
	return s3.NewFromConfig(cfg, fns...)
}

// pace makes every attempt (the middleware sits after the retry loop) wait for
// the limiter, and tells it whether S3 throttled the attempt.
func pace(l *s3limit.Limiter) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("keymigratePace",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if err := l.Wait(ctx); err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, err
				}
				out, md, err := next.HandleFinalize(ctx, in)
				l.Done(isThrottle(err))
				return out, md, err
			}), middleware.After)
	}
}

// isThrottle reports whether an attempt's error asks the client to slow down:
// any 503 (a HEAD's carries no body) or a throttling code.
func isThrottle(err error) bool {
	if err == nil {
		return false
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusServiceUnavailable {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && throttleCodes[ae.ErrorCode()]
}

// SQS builds the SQS client.
func SQS(cfg aws.Config) *sqs.Client {
	return sqs.NewFromConfig(cfg)
}

// throttleCodes are the error codes that ask a client to slow down.
var throttleCodes = map[string]bool{
	"SlowDown": true, "Throttling": true, "ThrottlingException": true, "RequestLimitExceeded": true,
	"TooManyRequests": true, "TooManyRequestsException": true, "RequestThrottled": true, "ServiceUnavailable": true,
}

// countThrottles adds a middleware that sees every attempt's response (the
// deserialize step runs inside the retry loop) and reports each throttling
// one with its operation's name.
func countThrottles(on func(operation string)) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("keymigrateCountThrottles",
			func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleDeserialize(ctx, in)
				throttled := isThrottle(err)
				if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && resp.StatusCode == http.StatusServiceUnavailable {
					throttled = true
				}
				if throttled {
					on(middleware.GetOperationName(ctx))
				}
				return out, md, err
			}), middleware.After)
	}
}

// Backoff is full-jitter exponential backoff that treats throttling errors like
// any other retryable error: a random delay below Base·2^(attempt-1), at most
// Max. The SDK's own waits from a base of one second for throttling errors.
type Backoff struct {
	Base, Max time.Duration
}

// BackoffDelay implements retry.BackoffDelayer.
func (b Backoff) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	d := b.Max
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 30 {
		d = min(b.Max, b.Base<<(attempt-1))
	}
	return time.Duration(rand.Int64N(int64(d) + 1)), nil
}
