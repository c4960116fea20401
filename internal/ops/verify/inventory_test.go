package verify_test

import (
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
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	s3inv "github.com/keymigrate/keymigrate/internal/pipeline/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// With a loaded S3 Inventory report, verify HEADs only the objects the
// report cannot vouch for (counted by a proxy every S3 request goes
// through): one the application wrote after the report's date (absent from
// it) and a copy the ledger says keymigrate wrote after that date. That copy
// was then deleted: the report still lists it, and verify catches the
// deletion all the same. Everything else is checked against the report, and
// the verdict is the one a verify without the report reaches.
func TestVerifyWithAnInventoryHeadsOnlyWhatItCannotVouchFor(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 40, Seed: 23, OwnerlessRate: 0.1, OrphanRate: 0.2}
	env.Seed(t, opts)
	env.Migrate(t)

	// The report: a listing of the bucket now, in AWS's CSV format.
	dir := t.TempDir()
	cfg := s3inv.Config{Format: s3inv.FormatCSV, DestinationBucket: "inventory-dest", ConfigID: "daily", ObjectsPerFile: 50, CreationTime: time.Now()}
	key, n, err := invtest.WriteFromListing(ctx, env.S3, env.Name, nil, s3inv.NewDir(dir), cfg)
	require.NoError(t, err)
	res, err := opsinv.Load(ctx, env.Store, env.S3, filepath.Join(dir, key), opsinv.Options{Bucket: env.Name, Workers: 2})
	require.NoError(t, err)
	require.EqualValues(t, n, res.Report.Rows)
	rep := res.Report

	// After the report's date: the application adds a photo under users/ ...
	var owned seed.Photo
	for _, p := range seed.Generate(opts) {
		if p.OwnerID != nil {
			owned = p
			break
		}
	}
	appID := uuid.NewString()
	appKey := "users/" + *owned.OwnerID + "/raw/" + appID + "/original.jpg"
	env.Put(t, appKey, []byte("uploaded after the report"), "image/jpeg", nil)
	env.InsertPhoto(t, appID, owned.OwnerID, appKey, nil, nil)
	// ... and keymigrate copies one photo's original again (a repair: the
	// ledger records the write after the report's date), which is then lost.
	l, err := keylayout.ParseLegacy(owned.Original)
	require.NoError(t, err)
	recopied, err := l.UserScoped(*owned.OwnerID, owned.ID)
	require.NoError(t, err)
	require.EqualValues(t, 1, ledgertest.SetCommittedAt(t, env.Store, recopied, rep.CreatedAt.Add(time.Minute)))

	require.NoError(t, env.Objects.Delete(ctx, recopied))

	proxy, err := faultproxy.New(os.Getenv("AWS_ENDPOINT_URL_S3"), faultproxy.Plan{}, 1)
	require.NoError(t, err)
	require.NoError(t, proxy.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = proxy.Close() })
	counted := s3.NewFromConfig(env.AWS, func(o *s3.Options) {
		o.UsePathStyle = true
		o.BaseEndpoint = func(s string) *string { return &s }(proxy.URL())
	})
	objects := objstore.New(counted, env.Name, objstore.Options{})

	withInv, err := verify.Run(ctx, env.Store, objects, verify.Options{Inventory: &rep, MaxProblems: 1000})
	require.NoError(t, err)
	c := proxy.Counts()
	require.EqualValues(t, 2, c.Requests[faultproxy.OpHeadObject], "a HEAD for the application's new object and the copy written after the report, none else: %s", c)
	require.EqualValues(t, 2, withInv.Heads)
	require.Zero(t, c.Requests[faultproxy.OpListObjectsV2], "the legacy prefixes are read from the report")
	require.Greater(t, withInv.Vouched, int64(100))
	require.EqualValues(t, 1, withInv.ProblemsByKind[verify.ReferencedKeyMissing], "the copy lost after the report is caught: %+v", withInv.Problems)
	require.Equal(t, recopied, withInv.Problems[0].Key)

	without, err := verify.Run(ctx, env.Store, objects, verify.Options{MaxProblems: 1000})
	require.NoError(t, err)
	require.Greater(t, without.Heads, int64(100))
	require.Equal(t, comparable(t, without)["problem_list"], comparable(t, withInv)["problem_list"])
	require.Equal(t, without.OrphanCount, withInv.OrphanCount)
	require.Equal(t, without.ObjectsChecked, withInv.ObjectsChecked)
	require.Equal(t, without.LegacyPresent, withInv.LegacyPresent)
}
