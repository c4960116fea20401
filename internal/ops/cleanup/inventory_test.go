package cleanup_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/harness/invtest"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	opsinv "github.com/keymigrate/keymigrate/internal/ops/inventory"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	s3inv "github.com/keymigrate/keymigrate/internal/pipeline/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// With a loaded S3 Inventory report, cleanup does not HEAD the copies the
// report vouches for (counted by the proxy every S3 request goes through),
// and decides exactly as without it. A copy the ledger records as re-made
// after the report's date (as verify --repair's re-copy would be recorded),
// and then lost, is HEADed, not trusted: its legacy object is kept, although
// the report lists the key with the very size and ETag the ledger has.
func TestCleanupSkipsTheHeadsTheInventoryVouchesFor(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	env.Seed(t, seed.Options{Photos: 40, Seed: 58, OwnerlessRate: 0.1, OrphanRate: 0.1})
	env.Migrate(t)

	time.Sleep(1100 * time.Millisecond) // the report's date is after every copy (S3 times are in seconds)
	dir := t.TempDir()
	cfg := s3inv.Config{Format: s3inv.FormatCSV, DestinationBucket: "inventory-dest", ConfigID: "daily", ObjectsPerFile: 50, CreationTime: time.Now()}
	key, _, err := invtest.WriteFromListing(ctx, env.S3, env.Name, nil, s3inv.NewDir(dir), cfg)
	require.NoError(t, err)
	res, err := opsinv.Load(ctx, env.Store, env.S3, filepath.Join(dir, key), opsinv.Options{Bucket: env.Name, Workers: 2})
	require.NoError(t, err)
	report := res.Report

	// After the report's date: a copy re-made by keymigrate (the ledger
	// says so), then lost.
	first := ledgertest.FirstCommitted(t, env.Store)
	remade, itsLegacy := first.NewKey, first.OldKey
	ledgertest.RecopyNow(t, env.Store, remade)

	require.NoError(t, env.Objects.Delete(ctx, remade))

	proxy, err := faultproxy.New(os.Getenv("AWS_ENDPOINT_URL_S3"), faultproxy.Plan{}, 1)
	require.NoError(t, err)
	require.NoError(t, proxy.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = proxy.Close() })
	counted := objstore.New(s3.NewFromConfig(env.AWS, func(o *s3.Options) {
		o.UsePathStyle = true
		o.BaseEndpoint = func(s string) *string { return &s }(proxy.URL())
	}), env.Name, objstore.Options{})
	heads := func() int64 { return proxy.Counts().Requests[faultproxy.OpHeadObject] }

	h0 := heads()
	without, err := cleanup.Run(ctx, env.Store, counted, cleanup.Options{Grace: 0, DryRun: true})
	require.NoError(t, err)
	h1 := heads()
	with, err := cleanup.Run(ctx, env.Store, counted, cleanup.Options{Grace: 0, DryRun: true, Again: true, Inventory: &report})
	require.NoError(t, err)
	h2 := heads()
	t.Logf("HEADs without the report %d, with it %d; copies vouched for %d", h1-h0, h2-h1, with.CopiesVouched)

	require.Zero(t, without.CopiesVouched)
	require.Positive(t, without.CopiesHeaded)
	require.Equal(t, without.CopiesHeaded-1, with.CopiesVouched, "every copy but the re-made one is vouched for")
	require.EqualValues(t, 1, with.CopiesHeaded, "the re-made copy is HEADed")
	require.Equal(t, h1-h0-with.CopiesVouched, h2-h1, "exactly the vouched copies' HEADs are not sent")
	require.Equal(t, without.Deleted, with.Deleted)
	require.Equal(t, without.Kept, with.Kept, "the same decisions")
	require.EqualValues(t, 1, with.Kept[cleanup.KeptCopyMissing], "%+v", with.KeptExamples)
	require.Equal(t, itsLegacy, with.Examples(cleanup.KeptCopyMissing)[0].OldKey)

	// For real: the lost copy's legacy object stays, the others go.
	real, err := cleanup.Run(ctx, env.Store, counted, cleanup.Options{Grace: 0, Inventory: &report})
	require.NoError(t, err)
	require.Equal(t, with.Deleted, real.Deleted)
	_, err = env.Objects.Head(ctx, itsLegacy)
	require.NoError(t, err, "the only copy of %s is kept", remade)
}
