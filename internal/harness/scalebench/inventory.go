package scalebench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keymigrate/keymigrate/internal/harness/invtest"
	"github.com/keymigrate/keymigrate/internal/harness/synths3"
	"github.com/keymigrate/keymigrate/internal/pipeline/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// writeInventory writes a CSV S3 Inventory report of the whole synthetic
// bucket, in AWS's layout, under a new directory of dir (what AWS would
// deliver the day after the load): the legacy prefixes from the endpoint's
// listing, the user-scoped copies from its keyspace (it cannot list users/
// as a whole), and
// returns the manifest's path and the directory to remove afterwards. It stands in for AWS's daily delivery: its
// cost is the harness's, not a phase's (AWS charges $0.0025 per 10^6
// objects listed and no request).
func writeInventory(ctx context.Context, srv *synths3.Server, endpoint, dir string) (manifest, root string, n int, took time.Duration, err error) {
	start := time.Now()
	root, err = os.MkdirTemp(dir, "kmscale-inventory-")
	if err != nil {
		return "", "", 0, 0, fmt.Errorf("inventory directory: %w", err)
	}
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("synthetic", "synthetic", ""),
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
	})
	bucket := srv.Bucket()
	w, err := inventory.NewWriter(inventory.NewDir(root), inventory.Config{
		Format:            inventory.FormatCSV,
		SourceBucket:      bucket,
		DestinationBucket: "inventory",
		ConfigID:          "scale-bench",
		Fields:            invtest.ListingFields,
		// The load's ledger times are before now: the report vouches for
		// every copy, as one delivered after the migration would.
		CreationTime: time.Now().UTC().Add(time.Minute),
		TempDir:      root,
	})
	if err != nil {
		return "", root, 0, 0, err
	}
	n, err = invtest.FromListing(ctx, client, bucket, keylayout.LegacyPrefixes, w)
	if err == nil {
		err = srv.EachUserObject(ctx, func(o synths3.UserObject) error {
			n++
			return w.Add(ctx, inventory.Object{
				Bucket: bucket, Key: o.Key, Size: o.Size, LastModified: o.LastModified.UTC(), ETag: o.ETag,
				StorageClass: o.StorageClass, IsMultipartUploaded: invtest.IsMultipartETag(o.ETag),
			})
		})
	}
	var key string
	if err == nil {
		key, err = w.Close(ctx)
	} else {
		w.Abort()
	}
	if err != nil {
		return "", root, n, 0, fmt.Errorf("write the inventory of s3://%s: %w", bucket, err)
	}
	return filepath.Join(root, filepath.FromSlash(key)), root, n, time.Since(start), nil
}
