package objstore

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Listed is an object as a listing shows it (no HEAD).
type Listed struct {
	Key          string
	Size         int64
	ETag         string
	StorageClass string
}

// ListPage is one ListObjectsV2 response.
type ListPage struct {
	Objects []Listed
	// Next is the continuation token of the following page; empty at the end.
	Next string
}

// ListOnePage lists one page of at most maxKeys objects under prefix, after
// startAfter (first page) or from token (following pages). Callers that list
// large prefixes drive the pagination themselves, to shard it and to stop
// early.
func (s *Store) ListOnePage(ctx context.Context, prefix, startAfter, token string, maxKeys int32) (ListPage, error) {
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix}
	if maxKeys > 0 {
		in.MaxKeys = aws.Int32(maxKeys)
	}
	if token != "" {
		in.ContinuationToken = &token
	} else if startAfter != "" {
		in.StartAfter = &startAfter
	}
	out, err := s.client.ListObjectsV2(ctx, in)
	if err != nil {
		return ListPage{}, fmt.Errorf("list s3://%s/%s: %w", s.bucket, prefix, classify(err))
	}
	p := ListPage{Objects: make([]Listed, 0, len(out.Contents))}
	for _, o := range out.Contents {
		sc := string(o.StorageClass)
		if sc == "" {
			sc = "STANDARD"
		}
		p.Objects = append(p.Objects, Listed{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag), StorageClass: sc})
	}
	if aws.ToBool(out.IsTruncated) {
		p.Next = aws.ToString(out.NextContinuationToken)
	}
	return p, nil
}
