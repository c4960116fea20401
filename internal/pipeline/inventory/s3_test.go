package inventory_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/harness/invtest"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/inventory"
)

var legacyPrefixes = []string{"uploaded/", "restored/", "thumbnails/", "animated/", "meta/"}

// listed is an object as ListObjectsV2 shows it.
type listed struct {
	size         int64
	etag         string
	lastModified time.Time
	storageClass string
}

// TestReportOfABucketReadsBackThroughS3 fills a bucket on the local S3 server
// with a few hundred legacy objects (tricky keys and a multipart upload
// among them, and objects outside the legacy prefixes), writes a CSV and a
// Parquet report of its legacy prefixes from a listing into the bucket
// itself, and reads both back through the S3 source: every listed object
// comes back once, with its size, ETag, last-modified time, storage class
// and multipart flag.
func TestReportOfABucketReadsBackThroughS3(t *testing.T) {
	client, bucket := testenv.NewBucket(t)
	ctx := context.Background()
	fill(t, client, bucket)
	want := listAll(t, client, bucket, legacyPrefixes)
	require.Greater(t, len(want), 300)

	sink := inventory.NewS3Bucket(client, bucket)
	base := inventory.Config{
		DestinationBucket: bucket, DestinationPrefix: "inventory", ConfigID: "legacy",
		ObjectsPerFile: 97, RowsPerRowGroup: 40, TempDir: t.TempDir(),
	}
	csvCfg := base
	csvCfg.Format = inventory.FormatCSV
	csvCfg.CreationTime = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	csvKey, n, err := invtest.WriteFromListing(ctx, client, bucket, legacyPrefixes, sink, csvCfg)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	pqCfg := base
	pqCfg.Format = inventory.FormatParquet
	pqCfg.CreationTime = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	_, n, err = invtest.WriteFromListing(ctx, client, bucket, legacyPrefixes, sink, pqCfg)
	require.NoError(t, err)
	require.Equal(t, len(want), n)

	for _, tc := range []struct {
		location string
		format   inventory.Format
	}{
		{"s3://" + bucket + "/" + csvKey, inventory.FormatCSV},
		// The configuration's directory: its newest report, the Parquet one.
		{"s3://" + bucket + "/inventory/" + bucket + "/legacy/", inventory.FormatParquet},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			tmp := t.TempDir()
			l, err := inventory.Parse(tc.location)
			require.NoError(t, err)
			r, err := l.Open(ctx, client, inventory.Options{SourceBucket: bucket, TempDir: tmp})
			require.NoError(t, err)
			require.Equal(t, tc.format, r.Manifest().FileFormat)
			require.True(t, r.Fields().Has(invtest.ListingFields))
			require.Len(t, r.Files(), (len(want)+96)/97)

			seen := map[string]bool{}
			for o, err := range r.Objects(ctx) {
				require.NoError(t, err)
				w, ok := want[o.Key]
				require.True(t, ok, "%q is in the report but not in the listing", o.Key)
				require.False(t, seen[o.Key], "%q twice", o.Key)
				seen[o.Key] = true
				require.Equal(t, w.size, o.Size, o.Key)
				require.Equal(t, w.etag, o.ETag, o.Key)
				require.True(t, w.lastModified.Equal(o.LastModified), "%s: %s vs %s", o.Key, w.lastModified, o.LastModified)
				require.Equal(t, w.storageClass, o.StorageClass, o.Key)
				require.Equal(t, o.Key == "uploaded/multipart.jpg", o.IsMultipartUploaded, o.Key)
			}
			require.Len(t, seen, len(want), "every listed object is in the report")

			// The files again, four at a time: the same count.
			var count atomic.Int64
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(4)
			for _, f := range r.Files() {
				g.Go(func() error {
					return r.ReadFile(gctx, f, func(inventory.Object) error { count.Add(1); return nil })
				})
			}
			require.NoError(t, g.Wait())
			require.EqualValues(t, len(want), count.Load())
			left, err := os.ReadDir(tmp)
			require.NoError(t, err)
			require.Empty(t, left, "the temporary copies of the data files are removed")

			// A data file replaced in the bucket is refused.
			f := r.Files()[1]
			put(t, client, bucket, f.Key, bytes.Repeat([]byte("x"), int(f.Size)))
			called := false
			err = r.ReadFile(ctx, f, func(inventory.Object) error { called = true; return nil })
			require.ErrorIs(t, err, inventory.ErrChecksum)
			require.False(t, called)
		})
	}

	// A location with no report says so, naming the value.
	l, err := inventory.Parse("s3://" + bucket + "/inventory/none/")
	require.NoError(t, err)
	_, err = l.Open(ctx, client, inventory.Options{})
	require.ErrorContains(t, err, `inventory location "s3://`+bucket+`/inventory/none/": want s3://bucket/path/manifest.json or a local directory containing manifest.json`)
	require.ErrorContains(t, err, "no manifest.json in")
}

// fill puts the legacy objects, a multipart upload, and objects outside the
// legacy prefixes that a report of the legacy prefixes must leave out.
func fill(t *testing.T, client *s3.Client, bucket string) {
	t.Helper()
	var keys []string
	for i := range 100 {
		job := fmt.Sprintf("job%04d", i)
		keys = append(keys, "uploaded/"+job+".jpg", "thumbnails/"+job+".jpg")
		if i%2 == 0 {
			keys = append(keys, "restored/"+job+"/r1.png", "meta/"+job+".json")
		}
		if i%3 == 0 {
			keys = append(keys, "animated/"+job+"/a1_loop.mp4")
		}
	}
	for _, k := range []string{"a b.jpg", "a+b.jpg", "100%.jpg", "comma,key.jpg", `quote"d.jpg`, "한글 사진.jpg", "émoji 😀.jpg", "semi;colon&amp=eq?q#frag.jpg"} {
		keys = append(keys, "uploaded/"+k)
	}
	keys = append(keys, "users/u1/raw/p1/original.jpg", "other/x.txt")
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(16)
	for i, k := range keys {
		g.Go(func() error {
			_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &k, Body: strings.NewReader(strings.Repeat("x", i%50))})
			return err
		})
	}
	require.NoError(t, g.Wait())

	// Two parts: the ETag ends in "-2".
	key := "uploaded/multipart.jpg"
	mu, err := client.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
	require.NoError(t, err)
	var parts []types.CompletedPart
	for i, size := range []int{5 << 20, 1} {
		out, err := client.UploadPart(context.Background(), &s3.UploadPartInput{
			Bucket: &bucket, Key: &key, UploadId: mu.UploadId, PartNumber: aws.Int32(int32(i + 1)),
			Body: bytes.NewReader(bytes.Repeat([]byte{'m'}, size)),
		})
		require.NoError(t, err)
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	_, err = client.CompleteMultipartUpload(context.Background(), &s3.CompleteMultipartUploadInput{
		Bucket: &bucket, Key: &key, UploadId: mu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	require.NoError(t, err)
}

func put(t *testing.T, client *s3.Client, bucket, key string, body []byte) {
	t.Helper()
	_, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)})
	require.NoError(t, err)
}

func listAll(t *testing.T, client *s3.Client, bucket string, prefixes []string) map[string]listed {
	t.Helper()
	out := map[string]listed{}
	for _, prefix := range prefixes {
		p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
		for p.HasMorePages() {
			page, err := p.NextPage(context.Background())
			require.NoError(t, err)
			for _, o := range page.Contents {
				sc := string(o.StorageClass)
				if sc == "" {
					sc = "STANDARD"
				}
				out[aws.ToString(o.Key)] = listed{
					size: aws.ToInt64(o.Size), etag: strings.Trim(aws.ToString(o.ETag), `"`),
					lastModified: aws.ToTime(o.LastModified), storageClass: sc,
				}
			}
		}
	}
	return out
}
