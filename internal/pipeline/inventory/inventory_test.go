package inventory

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/stretchr/testify/require"
)

const testFields = FieldSize | FieldLastModifiedDate | FieldETag | FieldStorageClass | FieldIsMultipartUploaded

// trickyKeys exercise URL-encoding and CSV quoting: spaces, '+', '%', ',',
// '"', newlines, unicode, and keys that only differ by a space versus a '+'.
var trickyKeys = []string{
	"a b.txt", "a+b.txt", "a%20b.txt", "100%.csv", "comma,separated,key", `quote"d`,
	"new\nline", "tab\tkey", "한글/x.txt", "émoji 😀/ü.bin", "dir/sub dir/file (1).jpg",
	"~tilde*star", "semi;colon&amp=eq?q#frag", "trailing space ", " leading", "plus+%2B+%25",
	"back\\slash", "日本語のキー", "x/y/z", "plain",
}

// testObjects returns n objects with tricky keys, as a listing shows them
// (ETags in quotes).
func testObjects(n int) []Object {
	out := make([]Object, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, testObject(i))
	}
	return out
}

// testObject returns the i-th object of testObjects.
func testObject(i int) Object {
	classes := []string{"STANDARD", "STANDARD_IA", "GLACIER_IR", "INTELLIGENT_TIERING"}
	base := time.Date(2024, 4, 22, 1, 11, 6, 0, time.UTC)
	key := fmt.Sprintf("p%03d/%s-%d", i%97, trickyKeys[i%len(trickyKeys)], i)
	mp := i%7 == 0
	sum := md5.Sum([]byte(key))
	etag := hex.EncodeToString(sum[:])
	if mp {
		etag += fmt.Sprintf("-%d", 2+i%5)
	}
	return Object{
		Key:                 key,
		Size:                int64(i) * 1031,
		LastModified:        base.Add(time.Duration(i) * 1234567 * time.Millisecond),
		ETag:                `"` + etag + `"`,
		StorageClass:        classes[i%len(classes)],
		IsMultipartUploaded: mp,
	}
}

// wantRecord is what the reader must return for an object written with
// testFields: the source bucket filled in, the ETag unquoted, every written
// field present (Size 0 included).
func wantRecord(o Object) Object {
	o.Bucket = "src-bucket"
	o.ETag = strings.Trim(o.ETag, `"`)
	o.Present = FieldBucket | FieldKey | testFields
	return o
}

func baseConfig(f Format) Config {
	return Config{
		Format:            f,
		SourceBucket:      "src-bucket",
		DestinationBucket: "inv-bucket",
		DestinationPrefix: "inventories",
		ConfigID:          "daily-all",
		Fields:            testFields,
		ObjectsPerFile:    700,
		RowsPerRowGroup:   128,
		CreationTime:      time.Date(2026, 11, 6, 21, 32, 17, 123e6, time.UTC),
	}
}

// writeReport writes objs as a report under root and returns the path of
// its manifest.json.
func writeReport(t testing.TB, root string, cfg Config, objs []Object) string {
	t.Helper()
	ctx := context.Background()
	cfg.TempDir = t.TempDir()
	w, err := NewWriter(NewDir(root), cfg)
	require.NoError(t, err)
	for _, o := range objs {
		require.NoError(t, w.Add(ctx, o))
	}
	key, err := w.Close(ctx)
	require.NoError(t, err)
	return filepath.Join(root, filepath.FromSlash(key))
}

func openLocal(t testing.TB, location string) *Reader {
	t.Helper()
	l, err := Parse(location)
	require.NoError(t, err)
	r, err := l.Open(context.Background(), nil, Options{})
	require.NoError(t, err)
	return r
}

func readAllRecords(t testing.TB, r *Reader) ([]Object, error) {
	t.Helper()
	var out []Object
	for o, err := range r.Objects(context.Background()) {
		if err != nil {
			return out, err
		}
		out = append(out, o)
	}
	return out, nil
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	objs := testObjects(3000)
	for _, format := range []Format{FormatCSV, FormatParquet} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			mp := writeReport(t, root, baseConfig(format), objs)

			configDir := filepath.Join(root, "inventories", "src-bucket", "daily-all")
			require.Equal(t, filepath.Join(configDir, "2026-11-06T21-32Z"), filepath.Dir(mp))
			require.FileExists(t, filepath.Join(configDir, "2026-11-06T21-32Z", "manifest.checksum"))
			require.FileExists(t, filepath.Join(configDir, "hive", "dt=2026-11-06-21-32", "symlink.txt"))

			// Open through the configuration's directory: the newest report.
			r := openLocal(t, configDir)
			m := r.Manifest()
			require.Len(t, r.Files(), 5, "3000 rows at 700 per file")
			require.Equal(t, "1794000737123", m.CreationTimestamp)
			ext := map[Format]string{FormatCSV: ".csv.gz", FormatParquet: ".parquet"}[format]
			for _, f := range r.Files() {
				require.True(t, strings.HasPrefix(f.Key, "inventories/src-bucket/daily-all/data/") && strings.HasSuffix(f.Key, ext), f.Key)
			}
			require.Equal(t, FieldBucket|FieldKey|testFields, r.Fields())
			require.False(t, r.Fields().Has(FieldVersionID))

			got, err := readAllRecords(t, r)
			require.NoError(t, err)
			require.Len(t, got, len(objs))
			for i := range objs {
				require.Equal(t, wantRecord(objs[i]), got[i], "record %d", i)
			}
		})
	}
}

func TestManifestIsAWSShaped(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mp := writeReport(t, root, baseConfig(FormatCSV), testObjects(10))
	data, err := os.ReadFile(mp)
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(data, &raw))
	for k, v := range map[string]any{
		"sourceBucket":      "src-bucket",
		"destinationBucket": "arn:aws:s3:::inv-bucket",
		"version":           "2016-11-30",
		"creationTimestamp": "1794000737123",
		"fileFormat":        "CSV",
		"fileSchema":        "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded",
	} {
		require.Equal(t, v, raw[k], k)
	}
	f0 := raw["files"].([]any)[0].(map[string]any)
	require.Contains(t, f0, "MD5checksum")
	require.IsType(t, float64(0), f0["size"], "files[].size is a JSON number")
	sum, err := os.ReadFile(filepath.Join(filepath.Dir(mp), "manifest.checksum"))
	require.NoError(t, err)
	h := md5.Sum(data)
	require.Equal(t, hex.EncodeToString(h[:]), string(sum))

	pq := parquetFileSchema(selectFields(testFields | versionFields))
	require.Equal(t, "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional binary version_id (UTF8); optional boolean is_latest; optional boolean is_delete_marker; optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); optional binary e_tag (UTF8); optional binary storage_class (UTF8); optional boolean is_multipart_uploaded;}", pq)
}

func TestCSVLineIsAWSShaped(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	objs := []Object{{
		Key: "dir/a b+c%,d.txt", Size: 5, ETag: `"d8e8fca2dc0f896fd7cb4cb0031ba249"`,
		StorageClass: "STANDARD", LastModified: time.Date(2024, 4, 22, 1, 14, 53, 0, time.UTC),
	}}
	r := openLocal(t, writeReport(t, root, baseConfig(FormatCSV), objs))
	fh, err := os.Open(filepath.Join(root, r.Files()[0].Key))
	require.NoError(t, err)
	defer fh.Close()
	gz, err := gzip.NewReader(fh)
	require.NoError(t, err)
	b, err := io.ReadAll(gz)
	require.NoError(t, err)
	require.Equal(t, `"src-bucket","dir/a+b%2Bc%25%2Cd.txt","5","2024-04-22T01:14:53.000Z","d8e8fca2dc0f896fd7cb4cb0031ba249","STANDARD","false"`+"\n", string(b))
}

func TestEncodeKey(t *testing.T) {
	t.Parallel()
	// Pairs as S3 returns them for ListObjectsV2 with encoding-type=url.
	for in, want := range map[string]string{
		"a b.txt":         "a+b.txt",
		"a+b.txt":         "a%2Bb.txt",
		"100%.csv":        "100%25.csv",
		"한글/x.txt":        "%ED%95%9C%EA%B8%80/x.txt",
		"run books/x.txt": "run+books/x.txt",
	} {
		require.Equal(t, want, EncodeKey(in), in)
	}
	_, err := DecodeKey("100%.csv")
	require.Error(t, err, "a bare %% is not an encoding: refused, not passed through")
}

func FuzzKeyRoundTrip(f *testing.F) {
	for _, k := range trickyKeys {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		got, err := DecodeKey(EncodeKey(key))
		if err != nil || got != key {
			t.Fatalf("DecodeKey(EncodeKey(%q)) = %q, %v", key, got, err)
		}
	})
}

// rawReport writes a hand-made report: one data file per entry of data,
// with a correct manifest and checksum, and returns the report directory.
func rawReport(t testing.TB, root string, format Format, schema string, data ...[]byte) string {
	t.Helper()
	m := Manifest{SourceBucket: "b", DestinationBucket: "arn:aws:s3:::d", Version: ManifestVersion,
		CreationTimestamp: "1514944800000", FileFormat: format, FileSchema: schema, Files: []File{}}
	ext := map[Format]string{FormatCSV: ".csv.gz", FormatParquet: ".parquet"}[format]
	for i, d := range data {
		key := fmt.Sprintf("inv/b/cfg/data/file-%d%s", i, ext)
		mustWrite(t, filepath.Join(root, filepath.FromSlash(key)), d)
		sum := md5.Sum(d)
		m.Files = append(m.Files, File{Key: key, Size: int64(len(d)), MD5Checksum: hex.EncodeToString(sum[:])})
	}
	mj, err := json.Marshal(m)
	require.NoError(t, err)
	dir := filepath.Join(root, "inv", "b", "cfg", "2018-01-03T02-00Z")
	writeManifest(t, dir, mj)
	return dir
}

// writeManifest writes manifest.json and a matching manifest.checksum (with
// a trailing newline, which the reader must accept).
func writeManifest(t testing.TB, dir string, mj []byte) {
	t.Helper()
	mustWrite(t, filepath.Join(dir, "manifest.json"), mj)
	ms := md5.Sum(mj)
	mustWrite(t, filepath.Join(dir, "manifest.checksum"), []byte(hex.EncodeToString(ms[:])+"\n"))
}

func gz(parts ...string) []byte {
	var buf bytes.Buffer
	for _, p := range parts { // one gzip member each
		w := gzip.NewWriter(&buf)
		_, _ = w.Write([]byte(p))
		_ = w.Close()
	}
	return buf.Bytes()
}

func mustWrite(t testing.TB, p string, b []byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, b, 0o644))
}

const fullCSVSchema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm, ObjectAccessControlList, ObjectOwner, SomeFutureField"

// TestReadAWSStyleCSV reads a hand-made data file in the shape AWS delivers:
// all values quoted, empty and missing values, an unknown column, a blank
// line at the end, and two gzip members.
func TestReadAWSStyleCSV(t *testing.T) {
	t.Parallel()
	part1 := `"b","photos/IMG+0001+%281%29.jpg","v1","true","false","1024","2024-04-22T01:11:06.000Z","0cc175b9c0f1b6a831c399e269772661","STANDARD","false","","SSE-S3","","","","","DISABLED","","e30K","","x"` + "\n"
	part2 := `"b","photos/%E2%82%AC+deleted",,"true","true",,"2024-04-22T01:13:28.000Z",,,,,,,,,,,,,,` + "\n\n"
	r := openLocal(t, rawReport(t, t.TempDir(), FormatCSV, fullCSVSchema, gz(part1, part2)))
	got, err := readAllRecords(t, r)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "photos/IMG 0001 (1).jpg", got[0].Key)
	require.EqualValues(t, 1024, got[0].Size)
	require.True(t, got[0].IsLatest)
	require.Equal(t, "SSE-S3", got[0].EncryptionStatus)
	require.Equal(t, "e30K", got[0].ObjectAccessControlList)
	require.Equal(t, time.Date(2024, 4, 22, 1, 11, 6, 0, time.UTC), got[0].LastModified)
	require.True(t, got[0].Present.Has(FieldSize|FieldEncryptionStatus))
	require.False(t, got[0].Present.Has(FieldReplicationStatus), "an empty value is not present")

	require.Equal(t, "photos/€ deleted", got[1].Key)
	require.True(t, got[1].IsDeleteMarker)
	require.False(t, got[1].Present.Has(FieldSize), "a delete marker has no size")
	require.Empty(t, got[1].VersionID)
}

// TestCorruptDataFileYieldsNoRecord damages the second data file in several
// ways: the first file's records come out, then ErrChecksum, and not one
// record of the damaged file.
func TestCorruptDataFileYieldsNoRecord(t *testing.T) {
	t.Parallel()
	damage := map[string]func([]byte) []byte{
		"byte flipped": func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-1] },
		"appended":     func(b []byte) []byte { return append(b, '\n') },
	}
	for _, format := range []Format{FormatCSV, FormatParquet} {
		for name, fn := range damage {
			t.Run(string(format)+"/"+name, func(t *testing.T) {
				t.Parallel()
				root := t.TempDir()
				r := openLocal(t, writeReport(t, root, baseConfig(format), testObjects(1500)))
				p := filepath.Join(root, r.Files()[1].Key)
				b, err := os.ReadFile(p)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(p, fn(b), 0o644))

				got, err := readAllRecords(t, r)
				require.ErrorIs(t, err, ErrChecksum)
				require.Len(t, got, 700, "only the first, intact file's records")
				require.Contains(t, err.Error(), r.Files()[1].Key, "the error names the file")

				called := false
				err = r.ReadFile(context.Background(), r.Files()[1], func(Object) error { called = true; return nil })
				require.ErrorIs(t, err, ErrChecksum)
				require.False(t, called)
			})
		}
	}
}

func TestTamperedManifestRefused(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mp := writeReport(t, root, baseConfig(FormatParquet), testObjects(100))
	mj, err := os.ReadFile(mp)
	require.NoError(t, err)
	sumPath := filepath.Join(filepath.Dir(mp), "manifest.checksum")
	sum, err := os.ReadFile(sumPath)
	require.NoError(t, err)
	open := func() error {
		l, err := Parse(mp)
		require.NoError(t, err)
		_, err = l.Open(context.Background(), nil, Options{})
		return err
	}

	// A data file's MD5 changed in the manifest (to hide a damaged file).
	i := bytes.Index(mj, []byte(`"MD5checksum": "`)) + len(`"MD5checksum": "`)
	edited := bytes.Clone(mj)
	if edited[i] == '0' { // another hex digit
		edited[i] = '1'
	} else {
		edited[i] = '0'
	}
	require.NotEqual(t, mj, edited)
	require.NoError(t, os.WriteFile(mp, edited, 0o644))
	require.ErrorIs(t, open(), ErrChecksum)

	// manifest.checksum changed.
	require.NoError(t, os.WriteFile(mp, mj, 0o644))
	require.NoError(t, os.WriteFile(sumPath, bytes.Replace(sum, sum[:1], []byte("x"), 1), 0o644))
	require.ErrorIs(t, open(), ErrChecksum)

	// manifest.checksum missing.
	require.NoError(t, os.Remove(sumPath))
	err = open()
	require.Error(t, err)
	require.Contains(t, err.Error(), "manifest.checksum")

	require.NoError(t, os.WriteFile(sumPath, sum, 0o644))
	require.NoError(t, open())
}

// TestParquetFileSchema checks the physical layout of a written Parquet data
// file: column order, physical types, converted types, repetition, Snappy.
func TestParquetFileSchema(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	cfg := baseConfig(FormatParquet)
	cfg.AllVersions = true
	cfg.Fields |= FieldObjectLockRetainUntilDate
	r := openLocal(t, writeReport(t, root, cfg, testObjects(300)))
	fh, err := os.Open(filepath.Join(root, r.Files()[0].Key))
	require.NoError(t, err)
	defer fh.Close()
	st, err := fh.Stat()
	require.NoError(t, err)
	pf, err := parquet.OpenFile(fh, st.Size())
	require.NoError(t, err)
	md := pf.Metadata()
	require.Equal(t, "s3.inventory", md.Schema[0].Name)
	type col struct {
		name, typ, conv string
		required        bool
	}
	want := []col{
		{"bucket", "BYTE_ARRAY", "UTF8", true}, {"key", "BYTE_ARRAY", "UTF8", true},
		{"version_id", "BYTE_ARRAY", "UTF8", false}, {"is_latest", "BOOLEAN", "", false},
		{"is_delete_marker", "BOOLEAN", "", false}, {"size", "INT64", "", false},
		{"last_modified_date", "INT64", "TIMESTAMP_MILLIS", false}, {"e_tag", "BYTE_ARRAY", "UTF8", false},
		{"storage_class", "BYTE_ARRAY", "UTF8", false}, {"is_multipart_uploaded", "BOOLEAN", "", false},
		{"object_lock_retain_until_date", "INT64", "TIMESTAMP_MILLIS", false},
	}
	require.Len(t, md.Schema[1:], len(want))
	for i, w := range want {
		e := md.Schema[i+1]
		conv := ""
		if v, ok := e.ConvertedType.Get(); ok {
			switch v {
			case deprecated.UTF8:
				conv = "UTF8"
			case deprecated.TimestampMillis:
				conv = "TIMESTAMP_MILLIS"
			default:
				conv = fmt.Sprint(int(v))
			}
		}
		typ, _ := e.Type.Get()
		rep, _ := e.RepetitionType.Get()
		require.Equal(t, w, col{e.Name, typ.String(), conv, rep.String() == "REQUIRED"}, "column %d", i)
		if w.name == "size" {
			require.Nil(t, e.LogicalType.Value, "AWS has a bare int64 size")
		}
	}
	for _, rg := range md.RowGroups {
		for _, cc := range rg.Columns {
			require.Equal(t, "SNAPPY", cc.MetaData.Codec.String())
		}
	}
	require.GreaterOrEqual(t, len(md.RowGroups), 2, "RowsPerRowGroup=128 gives several row groups")
}

func TestEmptyInventory(t *testing.T) {
	t.Parallel()
	for _, format := range []Format{FormatCSV, FormatParquet} {
		r := openLocal(t, writeReport(t, t.TempDir(), baseConfig(format), nil))
		require.Empty(t, r.Files())
		got, err := readAllRecords(t, r)
		require.NoError(t, err)
		require.Empty(t, got)
	}
}

func TestStoppingEarlyStopsReading(t *testing.T) {
	t.Parallel()
	r := openLocal(t, writeReport(t, t.TempDir(), baseConfig(FormatCSV), testObjects(1500)))
	n := 0
	for _, err := range r.Objects(context.Background()) {
		require.NoError(t, err)
		n++
		if n == 10 {
			break
		}
	}
	require.Equal(t, 10, n)

	stop := fmt.Errorf("enough")
	err := r.ReadFile(context.Background(), r.Files()[0], func(Object) error { return stop })
	require.Equal(t, stop, err, "the callback's error comes back as it is")
}
