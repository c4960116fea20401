// Package invtest builds S3 Inventory reports from a bucket's listing, for
// tests and benchmarks that need a report of a real bucket without AWS's
// daily delivery. It is harness code: product packages must not import it.
package invtest

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keymigrate/keymigrate/internal/pipeline/inventory"
)

// ListingFields are the fields a listing gives without a HEAD per object:
// the ones FromListing fills in.
const ListingFields = inventory.FieldSize | inventory.FieldLastModifiedDate | inventory.FieldETag |
	inventory.FieldStorageClass | inventory.FieldIsMultipartUploaded

// multipartETag matches the ETag S3 gives an object uploaded in N parts: the
// MD5 of the parts' MD5s, then "-N".
var multipartETag = regexp.MustCompile(`-[0-9]+$`)

// IsMultipartETag reports whether an ETag (with or without its quotes) is
// that of a multipart upload.
func IsMultipartETag(etag string) bool {
	return multipartETag.MatchString(strings.Trim(etag, `"`))
}

// Lister is the ListObjectsV2 call FromListing needs; *s3.Client has it.
type Lister interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// FromListing adds every object of bucket under prefixes (the whole bucket
// when there are none) to w, in key order, and returns how many it added. A
// prefix inside another one is listed once. w should be configured with
// ListingFields (others are left empty). The storage class of an object a
// server lists without one is STANDARD, as an inventory records it.
func FromListing(ctx context.Context, client Lister, bucket string, prefixes []string, w *inventory.Writer) (int, error) {
	n := 0
	for _, prefix := range disjoint(prefixes) {
		p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return n, fmt.Errorf("list s3://%s/%s: %w", bucket, prefix, err)
			}
			for _, o := range page.Contents {
				etag := strings.Trim(aws.ToString(o.ETag), `"`)
				sc := string(o.StorageClass)
				if sc == "" {
					sc = "STANDARD"
				}
				err := w.Add(ctx, inventory.Object{
					Bucket:              bucket,
					Key:                 aws.ToString(o.Key),
					Size:                aws.ToInt64(o.Size),
					LastModified:        aws.ToTime(o.LastModified).UTC(),
					ETag:                etag,
					StorageClass:        sc,
					IsMultipartUploaded: IsMultipartETag(etag),
				})
				if err != nil {
					return n, err
				}
				n++
			}
		}
	}
	return n, nil
}

// WriteFromListing writes a complete report of bucket's objects under
// prefixes to sink, with cfg's layout and format (cfg.Fields is set to
// ListingFields and cfg.SourceBucket to bucket). It returns the manifest's
// key and the number of objects.
func WriteFromListing(ctx context.Context, client Lister, bucket string, prefixes []string, sink inventory.Sink, cfg inventory.Config) (string, int, error) {
	cfg.SourceBucket = bucket
	cfg.Fields = ListingFields
	w, err := inventory.NewWriter(sink, cfg)
	if err != nil {
		return "", 0, err
	}
	n, err := FromListing(ctx, client, bucket, prefixes, w)
	if err != nil {
		w.Abort()
		return "", n, err
	}
	key, err := w.Close(ctx)
	return key, n, err
}

// disjoint sorts prefixes and drops those inside another, so that no object
// is listed twice; no prefixes means the whole bucket.
func disjoint(prefixes []string) []string {
	if len(prefixes) == 0 {
		return []string{""}
	}
	ps := slices.Clone(prefixes)
	slices.Sort(ps)
	out := ps[:0]
	for _, p := range ps {
		if len(out) > 0 && strings.HasPrefix(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return out
}
