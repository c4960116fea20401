package inventory_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/invtest"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	opsinv "github.com/keymigrate/keymigrate/internal/ops/inventory"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	s3inv "github.com/keymigrate/keymigrate/internal/pipeline/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

type testBundle struct {
	env *testenv.Env
	// listing is every object of the bucket: key → size and ETag.
	listing map[string][2]any
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	env.Seed(t, seed.Options{Photos: 40, Seed: 7, OrphanRate: 0.1})
	for _, k := range []string{"uploaded/ space+plus.jpg", "uploaded/é%.jpg", "meta/日本.json"} {
		env.Put(t, k, []byte("x"), "image/jpeg", nil)
	}
	b := &testBundle{env: env, listing: map[string][2]any{}}
	require.NoError(t, env.Objects.ListEach(context.Background(), "", func(k string, size int64, etag string) error {
		b.listing[k] = [2]any{size, etag}
		return nil
	}))
	return b
}

// report writes the inventory of the bucket's listing in format, into a
// local directory (S3 false) or another bucket, and returns its location.
func (b *testBundle) report(t *testing.T, format s3inv.Format, inS3 bool, created time.Time) string {
	t.Helper()
	cfg := s3inv.Config{Format: format, DestinationBucket: "inventory-dest", ConfigID: "daily", ObjectsPerFile: 25, RowsPerRowGroup: 10, CreationTime: created}
	var sink s3inv.Sink = s3inv.NewDir(t.TempDir())
	dir := sink.String()
	if inS3 {
		client, bucket := testenv.NewBucket(t)
		cfg.DestinationBucket = bucket
		sink = s3inv.NewS3Bucket(client, bucket)
	}
	key, n, err := invtest.WriteFromListing(context.Background(), b.env.S3, b.env.Name, nil, sink, cfg)
	require.NoError(t, err)
	require.Equal(t, len(b.listing), n)
	if inS3 {
		return "s3://" + cfg.DestinationBucket + "/" + key
	}
	return dir + "/" + strings.TrimSuffix(key, "/manifest.json")
}

func (b *testBundle) options(progress func(opsinv.Progress)) opsinv.Options {
	return opsinv.Options{Bucket: b.env.Name, Workers: 3, Progress: progress}
}

// The report of the bucket, CSV from a local directory or Parquet from S3,
// loads into the ledger with one progress call per data file; every object of
// the bucket is then found with its size and ETag (in the S3 API's form);
// loading it again reads nothing.
func TestLoadTheBucketsReport(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	for i, c := range []struct {
		format s3inv.Format
		inS3   bool
	}{{s3inv.FormatCSV, false}, {s3inv.FormatParquet, true}} {
		loc := b.report(t, c.format, c.inS3, time.Date(2026, 3, 1+i, 0, 0, 0, 0, time.UTC))
		var mu sync.Mutex
		var calls []opsinv.Progress
		res, err := opsinv.Load(ctx, b.env.Store, b.env.S3, loc, b.options(func(p opsinv.Progress) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, p)
		}))
		require.NoError(t, err, "%s", loc)
		files := (len(b.listing) + 24) / 25
		require.False(t, res.AlreadyLoaded)
		require.Equal(t, files, res.Files)
		require.EqualValues(t, len(b.listing), res.Rows)
		require.Equal(t, files, res.Report.LoadedFiles)
		require.EqualValues(t, len(b.listing), res.Report.Rows)
		require.Equal(t, string(c.format), res.Report.Format)
		require.Equal(t, b.env.Name, res.Report.SourceBucket)
		require.Len(t, calls, files, "a progress line per file")
		last := calls[len(calls)-1]
		require.Equal(t, files, last.Files)
		require.Equal(t, files, last.Report.Files)
		require.Positive(t, last.RowsPerSecond())

		keys := make([]string, 0, len(b.listing))
		for k := range b.listing {
			keys = append(keys, k)
		}
		got, err := b.env.Store.InventoryGetMany(ctx, res.Report, keys)
		require.NoError(t, err)
		require.Len(t, got, len(b.listing))
		for k, v := range b.listing {
			require.Equal(t, v[0], got[k].Size, k)
			require.Equal(t, v[1], got[k].ETag, "%s: the ETag compares equal to a listing's", k)
			require.Equal(t, "STANDARD", got[k].StorageClass)
			require.False(t, got[k].LastModified.IsZero())
		}

		again, err := opsinv.Load(ctx, b.env.Store, b.env.S3, loc, b.options(nil))
		require.NoError(t, err)
		require.True(t, again.AlreadyLoaded)
		require.Equal(t, res.Report.ID, again.Report.ID)
	}
	st, err := opsinv.ReadStatus(ctx, b.env.Store)
	require.NoError(t, err)
	require.NotNil(t, st.Current)
	require.True(t, st.Current.Loaded)
	require.Equal(t, "Parquet", st.Current.Format)
	require.Len(t, st.Replaced, 1, "the CSV report was replaced")
	var text bytes.Buffer
	require.NoError(t, st.WriteText(&text))
	require.Contains(t, text.String(), "created 2026-03-02T00:00:00Z")
	require.Contains(t, text.String(), "loaded: ")
}

// A report of another bucket is refused before anything is loaded, with both
// names and what to do; so is a report without the sizes plan needs.
func TestLoadRefusesAReportItCannotUse(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	loc := b.report(t, s3inv.FormatCSV, false, time.Now())
	o := b.options(nil)
	o.Bucket = "photos-prod"
	_, err := opsinv.Load(ctx, b.env.Store, nil, loc, o)
	var be *opsinv.BucketError
	require.ErrorAs(t, err, &be)
	require.Contains(t, err.Error(), `a report of bucket "`+b.env.Name+`"`)
	require.Contains(t, err.Error(), `this migration's bucket is "photos-prod"`)
	require.Contains(t, err.Error(), `or migrate bucket "`+b.env.Name+`" instead`, "the condition and the way out; migratectl names --bucket (cmd/migratectl: inventoryError)")

	dir := t.TempDir()
	w, err := s3inv.NewWriter(s3inv.NewDir(dir), s3inv.Config{Format: s3inv.FormatCSV, SourceBucket: b.env.Name, DestinationBucket: "d", ConfigID: "c",
		Fields: s3inv.FieldETag | s3inv.FieldStorageClass})
	require.NoError(t, err)
	require.NoError(t, w.Add(ctx, s3inv.Object{Key: "uploaded/a.jpg", ETag: "abc", StorageClass: "STANDARD"}))
	key, err := w.Close(ctx)
	require.NoError(t, err)
	_, err = opsinv.Load(ctx, b.env.Store, nil, filepath.Join(dir, key), b.options(nil))
	require.ErrorContains(t, err, "has no Size column")
	_, ok, err := b.env.Store.InventoryCurrent(ctx)
	require.NoError(t, err)
	require.False(t, ok, "nothing was begun")
}

// A report of every version loads each key's latest version only: older
// versions and delete markers are not objects the bucket holds.
func TestLoadKeepsTheLatestVersionOnly(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	w, err := s3inv.NewWriter(s3inv.NewDir(dir), s3inv.Config{Format: s3inv.FormatParquet, SourceBucket: b.env.Name, DestinationBucket: "d", ConfigID: "c",
		Fields: invtest.ListingFields, AllVersions: true})
	require.NoError(t, err)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, o := range []s3inv.Object{
		{Key: "uploaded/a.jpg", VersionID: "2", IsLatest: true, Size: 2, ETag: "bb", StorageClass: "STANDARD", LastModified: at},
		{Key: "uploaded/a.jpg", VersionID: "1", Size: 1, ETag: "aa", StorageClass: "STANDARD", LastModified: at},
		{Key: "uploaded/b.jpg", VersionID: "4", IsLatest: true, IsDeleteMarker: true, LastModified: at},
		{Key: "uploaded/b.jpg", VersionID: "3", Size: 3, ETag: "cc-2", StorageClass: "GLACIER", LastModified: at},
		{Key: "uploaded/c.jpg", VersionID: "5", IsLatest: true, Size: 5, ETag: "dd-3", StorageClass: "GLACIER", LastModified: at, IsMultipartUploaded: true},
	} {
		require.NoError(t, w.Add(ctx, o))
	}
	_, err = w.Close(ctx)
	require.NoError(t, err)
	res, err := opsinv.Load(ctx, b.env.Store, nil, filepath.Join(dir, w.ConfigKey()), b.options(nil))
	require.NoError(t, err)
	require.EqualValues(t, 2, res.Report.Rows)
	got, err := b.env.Store.InventoryGetMany(ctx, res.Report, []string{"uploaded/a.jpg", "uploaded/b.jpg", "uploaded/c.jpg"})
	require.NoError(t, err)
	require.Equal(t, map[string]ledger.InventoryObject{
		"uploaded/a.jpg": {Key: "uploaded/a.jpg", Size: 2, ETag: `"bb"`, StorageClass: "STANDARD", LastModified: at},
		"uploaded/c.jpg": {Key: "uploaded/c.jpg", Size: 5, ETag: `"dd-3"`, StorageClass: "GLACIER", LastModified: at, Multipart: true},
	}, got)
}
