package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
)

// TestRefusedManifests: what the reader refuses to open, and why.
func TestRefusedManifests(t *testing.T) {
	t.Parallel()
	good := Manifest{SourceBucket: "b", DestinationBucket: "arn:aws:s3:::d", Version: ManifestVersion,
		CreationTimestamp: "1514944800000", FileFormat: FormatCSV, FileSchema: "Bucket, Key, Size",
		Files: []File{{Key: "inv/data/a.csv.gz", Size: 1, MD5Checksum: strings.Repeat("0", 32)}}}
	for name, tc := range map[string]struct {
		edit func(*Manifest)
		want string
	}{
		"ORC":                 {func(m *Manifest) { m.FileFormat = FormatORC }, "ORC inventories are not supported"},
		"unknown format":      {func(m *Manifest) { m.FileFormat = "Avro" }, `unknown fileFormat "Avro"`},
		"unknown version":     {func(m *Manifest) { m.Version = "2030-01-01" }, `manifest version "2030-01-01"`},
		"no source bucket":    {func(m *Manifest) { m.SourceBucket = "" }, "no sourceBucket"},
		"file listed twice":   {func(m *Manifest) { m.Files = append(m.Files, m.Files[0]) }, "lists data file"},
		"malformed MD5":       {func(m *Manifest) { m.Files[0].MD5Checksum = "abc" }, "malformed MD5checksum"},
		"negative size":       {func(m *Manifest) { m.Files[0].Size = -1 }, "has size -1"},
		"no key column":       {func(m *Manifest) { m.FileSchema = "Bucket, Size" }, "lacks Bucket or Key"},
		"column twice":        {func(m *Manifest) { m.FileSchema = "Bucket, Key, Size, size" }, "names size twice"},
		"key outside the dir": {func(m *Manifest) { m.Files[0].Key = "../../etc/passwd" }, "is not below"},
	} {
		t.Run(name, func(t *testing.T) {
			m := good
			m.Files = append([]File(nil), good.Files...)
			tc.edit(&m)
			mj, err := json.Marshal(m)
			require.NoError(t, err)
			dir := t.TempDir()
			writeManifest(t, dir, mj)
			_, err = Open(context.Background(), NewDir(dir), "manifest.json", Options{})
			if err == nil {
				// Keys are checked when a data file is opened.
				r, oerr := Open(context.Background(), NewDir(dir), "manifest.json", Options{})
				require.NoError(t, oerr)
				_, err = readAllRecords(t, r)
			}
			require.ErrorIs(t, err, ErrFormat)
			require.ErrorContains(t, err, tc.want)
		})
	}

	mj, err := json.Marshal(good)
	require.NoError(t, err)
	dir := t.TempDir()
	writeManifest(t, dir, mj)
	_, err = Open(context.Background(), NewDir(dir), "manifest.json", Options{SourceBucket: "photos"})
	require.ErrorIs(t, err, ErrFormat)
	require.ErrorContains(t, err, `the report is of bucket "b", not "photos"`)
}

// TestRefusedCSVRows: a data file that matches its checksum but not its
// schema is refused at the first bad row, naming the line.
func TestRefusedCSVRows(t *testing.T) {
	t.Parallel()
	const schema = "Bucket, Key, Size, LastModifiedDate, IsMultipartUploaded"
	good := `"b","ok","1","2024-04-22T01:11:06.000Z","false"` + "\n"
	for name, tc := range map[string]struct{ row, want string }{
		"too few columns":    {`"b","k","1","2024-04-22T01:11:06.000Z"`, "wrong number of fields"},
		"too many columns":   {`"b","k","1","2024-04-22T01:11:06.000Z","false","x"`, "wrong number of fields"},
		"size not a number":  {`"b","k","1 KiB","2024-04-22T01:11:06.000Z","false"`, "line 2: Size"},
		"bad time":           {`"b","k","1","22/04/2024","false"`, "line 2: LastModifiedDate"},
		"bad bool":           {`"b","k","1","2024-04-22T01:11:06.000Z","maybe"`, "line 2: IsMultipartUploaded"},
		"bad key encoding":   {`"b","100%.jpg","1","2024-04-22T01:11:06.000Z","false"`, "not URL-encoded"},
		"other bucket":       {`"other","k","1","2024-04-22T01:11:06.000Z","false"`, `a record of bucket "other"`},
		"empty key":          {`"b","","1","2024-04-22T01:11:06.000Z","false"`, "empty key"},
		"unterminated quote": {`"b","k,"1","2024-04-22T01:11:06.000Z","false"`, "line 2"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := openLocal(t, rawReport(t, t.TempDir(), FormatCSV, schema, gz(good+tc.row+"\n")))
			got, err := readAllRecords(t, r)
			require.ErrorIs(t, err, ErrFormat)
			require.ErrorContains(t, err, tc.want)
			require.Len(t, got, 1, "the good row before it")
		})
	}

	r := openLocal(t, rawReport(t, t.TempDir(), FormatCSV, schema, []byte("not gzip")))
	_, err := readAllRecords(t, r)
	require.ErrorIs(t, err, ErrFormat)
	require.ErrorContains(t, err, "gzip")
}

// TestRefusedParquet: a Parquet data file whose key is missing, or a known
// column of a type its field cannot hold, is refused before any row.
func TestRefusedParquet(t *testing.T) {
	t.Parallel()
	type noKey struct {
		Bucket string `parquet:"bucket"`
		Size   int64  `parquet:"size"`
	}
	type sizeAsText struct {
		Bucket string `parquet:"bucket"`
		Key    string `parquet:"key"`
		Size   string `parquet:"size"`
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"no key column": {pqBytes(t, []noKey{{"b", 1}}), "lacks a bucket or key column"},
		"size as text":  {pqBytes(t, []sizeAsText{{"b", "k", "1"}}), "column size has type BYTE_ARRAY"},
		"not parquet":   {[]byte("PAR1 but not really"), "parquet"},
	} {
		t.Run(name, func(t *testing.T) {
			r := openLocal(t, rawReport(t, t.TempDir(), FormatParquet, "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional int64 size;}", tc.data))
			called := false
			err := r.ReadFile(context.Background(), r.Files()[0], func(Object) error { called = true; return nil })
			require.ErrorIs(t, err, ErrFormat)
			require.ErrorContains(t, err, tc.want)
			require.False(t, called)
		})
	}
}

func pqBytes[T any](t testing.TB, rows []T) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, parquet.Write(&buf, rows))
	return buf.Bytes()
}

// TestReadOtherParquetWriters reads a Parquet file laid out the way another
// writer might: columns in another order, an extra column, microsecond
// timestamps and a quoted ETag.
func TestReadOtherParquetWriters(t *testing.T) {
	t.Parallel()
	type row struct {
		Extra        string `parquet:"some_future_field"`
		Key          string `parquet:"key"`
		LastModified int64  `parquet:"last_modified_date,timestamp(microsecond)"`
		Bucket       string `parquet:"bucket"`
		ETag         string `parquet:"e_tag"`
		Size         *int64 `parquet:"size,optional"`
	}
	size := int64(42)
	data := pqBytes(t, []row{
		{"x", "a b+c", 1713748266123456, "b", `"0cc175b9c0f1b6a831c399e269772661"`, &size},
		{"y", "deleted", 1713748266000000, "b", "", nil},
	})
	dir := rawReport(t, t.TempDir(), FormatParquet, "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); optional binary e_tag (UTF8);}", data)
	r := openLocal(t, dir)
	got, err := readAllRecords(t, r)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "a b+c", got[0].Key, "a Parquet key is not URL-encoded")
	require.EqualValues(t, 42, got[0].Size)
	require.Equal(t, "0cc175b9c0f1b6a831c399e269772661", got[0].ETag)
	require.Equal(t, int64(1713748266123456), got[0].LastModified.UnixMicro())
	require.False(t, got[1].Present.Has(FieldSize))
}
