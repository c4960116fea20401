package objstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Where the server does not enforce a write's conditions (If-None-Match and
// If-Match on CopyObject and CompleteMultipartUpload, If-Match on
// DeleteObject: versitygw v1.8.0 and MinIO ignore them), keymigrate reads the
// key right before the write instead. That read vouches for one attempt only.
// The SDK's own retries of a failed write (a 500, a reset, a SlowDown, for up
// to seconds) would send it again on the strength of the old read, over
// whatever the application wrote meanwhile: a retried copy put legacy bytes
// over an application's new thumbnail, and the copy's later discard left the
// row pointing at nothing (the thirty-minute MinIO soak). So such a write is
// sent without the SDK's retries, and before each retry the key is read again.

// noRetries makes one request one attempt.
func noRetries(o *s3.Options) { o.RetryMaxAttempts = 1 }

// guardedWrite sends write (an attempt, given the options that switch the
// SDK's retries off) at most as many times as the client's retryer allows,
// retrying only what the retryer would retry, after its backoff. Before every
// attempt but the first (or before the first too, if checkFirst) it reads key
// and returns ErrPrecondition unless the key still holds wantETag ("": no
// object), or ErrNotFound when wantETag is set and the key is gone.
func (s *Store) guardedWrite(ctx context.Context, key, wantETag string, checkFirst bool, write func(...func(*s3.Options)) error) error {
	retryer := s.client.Options().Retryer
	for attempt := 1; ; attempt++ {
		if attempt > 1 || checkFirst {
			if err := s.expect(ctx, key, wantETag); err != nil {
				return err
			}
		}
		err := write(noRetries)
		if err == nil || attempt >= retryer.MaxAttempts() || !retryer.IsErrorRetryable(err) || ctx.Err() != nil {
			return err
		}
		delay, derr := retryer.RetryDelay(attempt, err)
		if derr != nil {
			return errors.Join(err, derr)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

// expect reads key and checks it holds wantETag ("": that there is no object).
func (s *Store) expect(ctx context.Context, key, wantETag string) error {
	i, err := s.Head(ctx, key)
	switch {
	case wantETag == "" && errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	case wantETag == "":
		return fmt.Errorf("s3://%s/%s exists (ETag %s) since it was read: %w", s.bucket, key, i.ETag, ErrPrecondition)
	case i.ETag != wantETag:
		return fmt.Errorf("s3://%s/%s: ETag %s, want %s: %w", s.bucket, key, i.ETag, wantETag, ErrPrecondition)
	}
	return nil
}
