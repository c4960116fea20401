package inventory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRefusesWhatIsNotALocation(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	emptyDir := filepath.Join(root, "empty")
	require.NoError(t, os.Mkdir(emptyDir, 0o755))
	notManifest := filepath.Join(root, "objects.csv")
	mustWrite(t, notManifest, []byte("x"))

	for _, tc := range []struct{ value, why string }{
		{"", "empty"},
		{"s3://", `"" is not a bucket name`},
		{"s3://bucket", "no path after the bucket"},
		{"s3://bucket/", "no path after the bucket"},
		{"s3://bad/bucket/../x", ""}, // accepted: keys may contain anything
		{"S3://bucket/inv/manifest.json", `scheme "S3"`},
		{"https://bucket.s3.amazonaws.com/inv/manifest.json", `scheme "https"`},
		{filepath.Join(root, "missing"), "no such file or directory"},
		{emptyDir, "no manifest.json in"},
		{notManifest, "a file that is not a manifest.json"},
	} {
		_, err := Parse(tc.value)
		if tc.why == "" {
			require.NoError(t, err, tc.value)
			continue
		}
		require.Error(t, err, tc.value)
		var le *LocationError
		require.True(t, errors.As(err, &le), "%q: %v", tc.value, err)
		require.Contains(t, err.Error(), "inventory location \""+tc.value+"\": want s3://bucket/path/manifest.json or a local directory containing manifest.json")
		require.Contains(t, err.Error(), tc.why)
	}
}

func TestParseS3(t *testing.T) {
	t.Parallel()
	l, err := Parse("s3://inv-bucket/inventories/photos/daily/2026-11-06T21-32Z/manifest.json")
	require.NoError(t, err)
	require.True(t, l.IsS3())
	require.Equal(t, "inv-bucket", l.Bucket)
	require.Equal(t, "inventories/photos/daily/2026-11-06T21-32Z/manifest.json", l.Key)
	_, err = l.Open(context.Background(), nil, Options{})
	require.ErrorContains(t, err, "needs an S3 client")
}

// TestLocalLocations opens the same reports through the three local forms:
// the manifest, its dated directory, and the configuration's directory,
// which means its newest report.
func TestLocalLocations(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	older := baseConfig(FormatCSV)
	older.CreationTime = time.Date(2026, 11, 5, 21, 32, 0, 0, time.UTC)
	olderManifest := writeReport(t, root, older, testObjects(10))
	newer := baseConfig(FormatParquet)
	newerManifest := writeReport(t, root, newer, testObjects(20))
	// A dated directory without a manifest (a delivery in progress) and
	// other directories are passed over.
	require.NoError(t, os.MkdirAll(filepath.Join(root, "inventories", "src-bucket", "daily-all", "2026-11-07T21-32Z"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "inventories", "src-bucket", "daily-all", "zzz"), 0o755))

	for value, want := range map[string]struct {
		format Format
		n      int
	}{
		olderManifest:                             {FormatCSV, 10},
		filepath.Dir(olderManifest):               {FormatCSV, 10},
		newerManifest:                             {FormatParquet, 20},
		filepath.Dir(newerManifest):               {FormatParquet, 20},
		filepath.Dir(filepath.Dir(newerManifest)): {FormatParquet, 20},
	} {
		r := openLocal(t, value)
		require.Equal(t, want.format, r.Manifest().FileFormat, value)
		got, err := readAllRecords(t, r)
		require.NoError(t, err)
		require.Len(t, got, want.n, value)
	}
}

// TestLocalCopyWithoutPrefix reads a report synced without the
// destination prefix: the data files are found under the nearest ancestor
// that has them.
func TestLocalCopyWithoutPrefix(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mp := writeReport(t, root, baseConfig(FormatCSV), testObjects(5))
	r := openLocal(t, mp)
	require.Equal(t, "inventories/src-bucket/daily-all/2026-11-06T21-32Z/manifest.json", r.ManifestKey())

	// A copy that lost the data files is refused when opened, naming one.
	require.NoError(t, os.RemoveAll(filepath.Join(root, "inventories", "src-bucket", "daily-all", "data")))
	l, err := Parse(mp)
	require.NoError(t, err)
	_, err = l.Open(context.Background(), nil, Options{})
	require.ErrorContains(t, err, "not found under any parent directory")
	var le *LocationError
	require.True(t, errors.As(err, &le), "a missing file is a wrong location: %v", err)
}
