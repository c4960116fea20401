package plan_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/harness/invtest"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	opsinv "github.com/keymigrate/keymigrate/internal/ops/inventory"
	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	s3inv "github.com/keymigrate/keymigrate/internal/pipeline/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// findings is what a plan says about the bucket and the rows: the report
// without its timings, its request counts and where its objects came from.
func findings(r *plan.Report) plan.Report {
	f := *r
	f.At, f.Seconds, f.Phases = time.Time{}, 0, nil
	f.Listing.Requests, f.Listing.Seconds, f.Listing.Inventory, f.Listing.InventoryPages = 0, 0, nil, 0
	f.Estimate.PlanCost = 0
	return f
}

// A plan from an S3 Inventory report of the bucket (CSV from a local copy,
// Parquet read from S3) finds exactly what a plan that lists the bucket
// finds, and sends no ListObjectsV2 at all: counted by the proxy every S3
// request of the load and the plan goes through.
func TestPlanFromAnInventoryEqualsAPlanThatLists(t *testing.T) {
	b := setup(t, seed.Options{Photos: 60, Seed: 94, OwnerlessRate: 0.1, OrphanRate: 0.1})
	env, ctx := b.env, context.Background()
	// Problems for the plan to find: a missing original, a shared one, rows
	// a worker would dead-letter, keys no pattern knows.
	victim, dup := b.photos[0], b.photos[1]
	require.NoError(t, env.Objects.Delete(ctx, victim.Original))
	env.InsertPhoto(t, uuid.NewString(), dup.OwnerID, dup.Original, nil, nil)
	env.InsertPhoto(t, uuid.NewString(), testenv.Ptr("../etc"), dup.Original, nil, nil)
	for _, k := range []string{"uploaded/ space.jpg", "uploaded/~tilde.jpg", "uploaded/é.jpg", "meta/x/y.json", "thumbnails/a.png"} {
		env.Put(t, k, []byte("x"), "image/jpeg", nil)
	}
	env.Put(t, "users/someone/raw/1/original.jpg", []byte("not legacy"), "image/jpeg", nil)

	opts := plan.Options{Examples: 3, Top: 4, Workers: 2, Concurrency: 4}
	listed := b.plan(t, opts)
	require.Positive(t, listed.Listing.Requests)
	require.Positive(t, listed.Problem("rows_pointing_at_missing_objects").Count)
	require.Positive(t, listed.Problem("unrecognised_legacy_objects").Count)
	require.Positive(t, listed.Problem("orphans").Count)

	proxy, err := faultproxy.New(os.Getenv("AWS_ENDPOINT_URL_S3"), faultproxy.Plan{}, 1)
	require.NoError(t, err)
	require.NoError(t, proxy.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = proxy.Close() })
	counted := s3.NewFromConfig(env.AWS, func(o *s3.Options) {
		o.UsePathStyle = true
		o.BaseEndpoint = func(s string) *string { return &s }(proxy.URL())
	})
	objects := objstore.New(counted, env.Name, objstore.Options{})

	for i, c := range []struct {
		format s3inv.Format
		inS3   bool
	}{{s3inv.FormatCSV, false}, {s3inv.FormatParquet, true}} {
		t.Run(string(c.format), func(t *testing.T) {
			cfg := s3inv.Config{Format: c.format, DestinationBucket: "inventory-dest", ConfigID: "daily", ObjectsPerFile: 40, RowsPerRowGroup: 16,
				CreationTime: time.Now().Add(time.Duration(i-5) * time.Minute)}
			dir := t.TempDir()
			var sink s3inv.Sink = s3inv.NewDir(dir)
			if c.inS3 {
				client, bucket := testenv.NewBucket(t)
				cfg.DestinationBucket = bucket
				sink = s3inv.NewS3Bucket(client, bucket)
			}
			key, n, err := invtest.WriteFromListing(ctx, env.S3, env.Name, nil, sink, cfg)
			require.NoError(t, err)
			loc := filepath.Join(dir, key)
			if c.inS3 {
				loc = "s3://" + cfg.DestinationBucket + "/" + key
			}

			before := proxy.Counts()
			// What `migratectl plan --inventory LOC` does: load the report
			// unless it is the loaded one, then plan from it.
			res, err := opsinv.Load(ctx, env.Store, counted, loc, opsinv.Options{Bucket: env.Name, Workers: 2})
			require.NoError(t, err)
			require.EqualValues(t, n, res.Report.Rows)
			fromInv := opts
			fromInv.Inventory = &res.Report
			r, err := plan.Run(ctx, env.Store, objects, fromInv)
			require.NoError(t, err)
			after := proxy.Counts()

			require.Equal(t, before.Requests[faultproxy.OpListObjectsV2], after.Requests[faultproxy.OpListObjectsV2], "no ListObjectsV2: %s", after)
			require.Equal(t, before.Requests[faultproxy.OpHeadObject], after.Requests[faultproxy.OpHeadObject], "no HEAD either")
			if c.inS3 {
				require.Greater(t, after.Requests[faultproxy.OpGetObject], before.Requests[faultproxy.OpGetObject], "the report was read through the proxy")
			}
			require.Zero(t, r.Listing.Requests)
			require.Positive(t, r.Listing.InventoryPages)
			require.NotNil(t, r.Listing.Inventory)
			require.True(t, r.Listing.Inventory.CreatedAt.Equal(cfg.CreationTime.UTC().Truncate(time.Millisecond)))
			require.Equal(t, findings(listed), findings(r))
			// Split into ranges of job ids, the report's key ranges read
			// range by range: the same findings.
			fromInv.RangeBounds = []string{"4", "8", "b", "c"}
			split, err := plan.Run(ctx, env.Store, objects, fromInv)
			require.NoError(t, err)
			require.Equal(t, 5, split.Ranges)
			require.Equal(t, 5*5, split.Listing.Shards, "a key range per prefix and range")
			split.Ranges, split.Listing.Shards = listed.Ranges, listed.Listing.Shards
			require.Equal(t, findings(listed), findings(split), "split into ranges")
			require.Equal(t, before.Requests[faultproxy.OpListObjectsV2], proxy.Counts().Requests[faultproxy.OpListObjectsV2], "no ListObjectsV2 when split either")

			var text bytes.Buffer
			require.NoError(t, r.WriteText(&text))
			require.Contains(t, text.String(), "read from the S3 Inventory report of "+res.Report.CreatedAt.Format(time.RFC3339))
			require.Contains(t, text.String(), "objects written since are not counted")
		})
	}
}
