package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// probeUploadID is the upload ID ServesCopies names: no upload has it.
const probeUploadID = "keymigrate-probe-no-such-upload"

// ServesCopies asks the server for the two server-side copies a migration
// makes, a whole one (CopyObject) and a part of a multipart one
// (UploadPartCopy), of missingKey, a key that must not exist, and returns nil
// if the server answered both. A read alone does not tell: in a partial
// outage S3 answers every HEAD, GET and LIST while every copy fails with 503
// or a reset connection, and a worker that waits for S3 by reading it would
// take its messages back at once, only to fail them again.
//
// Nothing is written: the copy's source does not exist (and is pinned to an
// ETag no object has, in case it did), and the part names an upload that does
// not exist. A server that serves copies refuses them with a client error
// (404 NoSuchKey or NoSuchUpload, or 412); the error returned is that of a
// copy the server did not answer so (a 5xx, 429, a connection reset or a
// timeout).
func (s *Store) ServesCopies(ctx context.Context, missingKey string) error {
	src := aws.String(copySource(s.bucket, missingKey))
	dst := ProbePrefix + "copy-of-nothing"
	_, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: &s.bucket, Key: &dst, CopySource: src,
		CopySourceIfMatch: aws.String(`"keymigrate-probe"`),
	})
	if err := refused(err); err != nil {
		return fmt.Errorf("copy (probe) s3://%s/%s: %w", s.bucket, missingKey, err)
	}
	_, err = s.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
		Bucket: &s.bucket, Key: &dst, CopySource: src, UploadId: aws.String(probeUploadID), PartNumber: aws.Int32(1),
	})
	if err := refused(err); err != nil {
		return fmt.Errorf("copy part (probe) of s3://%s/%s: %w", s.bucket, missingKey, err)
	}
	return nil
}

// refused is nil when err is the server's client error (a 4xx other than 429
// Too Many Requests): the server read the request and served it, with a
// refusal. Success, which ServesCopies never expects, is an error too.
func refused(err error) error {
	if err == nil {
		return errors.New("the server accepted a copy that should have been refused")
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		if c := re.HTTPStatusCode(); c >= 400 && c < 500 && c != http.StatusTooManyRequests {
			return nil
		}
	}
	return err
}
