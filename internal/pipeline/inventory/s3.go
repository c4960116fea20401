package inventory

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3API is the part of the aws-sdk-go-v2 S3 client an S3Bucket uses;
// *s3.Client implements it.
//
// The S3 side of inventories lives here rather than in
// internal/pipeline/objstore: objstore is the migration's guarded object
// layer (conditional writes, error classification, copy fidelity) and knows
// nothing of reports, while an inventory needs three plain calls on a bucket
// that is often not the migrated one. Taking the SDK client directly keeps
// that one concern in one package, with no adapter between them.
type S3API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// S3Bucket is an inventory's destination bucket read (and, for tests and
// benchmarks, written) through the S3 API. It is a Source and a Sink.
type S3Bucket struct {
	client S3API
	bucket string
}

// NewS3Bucket returns the S3Bucket for bucket.
func NewS3Bucket(client S3API, bucket string) *S3Bucket {
	return &S3Bucket{client: client, bucket: bucket}
}

// String returns s3://bucket.
func (b *S3Bucket) String() string { return "s3://" + b.bucket }

// Open streams the object at key with one GetObject.
func (b *S3Bucket) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: &key})
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("get s3://%s/%s: %w (%w)", b.bucket, key, fs.ErrNotExist, err)
		}
		return nil, fmt.Errorf("get s3://%s/%s: %w", b.bucket, key, err)
	}
	return out.Body, nil
}

func notFound(err error) bool {
	var nsk *types.NoSuchKey
	var re *awshttp.ResponseError
	return errors.As(err, &nsk) || (errors.As(err, &re) && re.HTTPStatusCode() == 404)
}

// SubDirs lists the common prefixes under prefix with delimiter "/".
func (b *S3Bucket) SubDirs(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
		Bucket: &b.bucket, Prefix: &prefix, Delimiter: aws.String("/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", b.bucket, prefix, err)
		}
		for _, cp := range page.CommonPrefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), prefix), "/")
			if name != "" {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// Put stores the object with one PutObject, with a Content-MD5 so that S3
// refuses bytes damaged on the way. body is read twice (hash, then send).
func (b *S3Bucket) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) error {
	h := md5.New()
	if _, err := io.Copy(h, body); err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", b.bucket, key, err)
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", b.bucket, key, err)
	}
	_, err := b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &b.bucket, Key: &key, Body: body, ContentLength: aws.Int64(size),
		ContentMD5: aws.String(base64.StdEncoding.EncodeToString(h.Sum(nil))),
	})
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", b.bucket, key, err)
	}
	return nil
}
