package inventory

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
)

// Config describes the inventory configuration whose report a Writer
// produces.
type Config struct {
	Format            Format // FormatCSV or FormatParquet
	SourceBucket      string
	DestinationBucket string // bucket name (the manifest records arn:aws:s3:::<name>)
	DestinationPrefix string // optional key prefix in the destination bucket
	ConfigID          string // the inventory configuration's ID

	// Fields are the configured optional fields (FieldSize, FieldETag, ...);
	// Bucket and Key are always written, in AWS's column order whatever the
	// set.
	Fields FieldSet
	// AllVersions corresponds to IncludedObjectVersions=All, which adds
	// VersionId, IsLatest and IsDeleteMarker.
	AllVersions bool

	ObjectsPerFile  int       // rows per data file; <= 0 means 1,000,000
	RowsPerRowGroup int64     // Parquet only; <= 0 means 100,000
	CreationTime    time.Time // the scan's start; zero means time.Now()
	TempDir         string    // where data files are built before the Put (default os.TempDir())
}

// Writer writes a complete inventory report in AWS's layout and format,
// for tests and benchmarks that need one:
//
//	<prefix>/<source>/<config-ID>/data/<uuid>.csv.gz | .parquet
//	<prefix>/<source>/<config-ID>/YYYY-MM-DDTHH-MMZ/manifest.json
//	<prefix>/<source>/<config-ID>/YYYY-MM-DDTHH-MMZ/manifest.checksum
//	<prefix>/<source>/<config-ID>/hive/dt=YYYY-MM-DD-HH-MM/symlink.txt
//
// Each data file is built in a temporary file (disk: one data file) and put
// to the Sink when it is full; the manifest is put last, as AWS delivers it
// once the data files are in place. A Writer is not safe for concurrent use.
type Writer struct {
	sink    Sink
	cfg     Config
	fields  []*field
	base    string // key of the configuration's directory
	created time.Time
	files   []File

	cur     dataFile
	inFile  int
	closed  bool
	pqSch   *parquet.Schema
	rowBuf  []parquet.Row
	csvLine []byte
}

// NewWriter validates cfg and prepares a Writer that puts into sink.
func NewWriter(sink Sink, cfg Config) (*Writer, error) {
	if cfg.Format != FormatCSV && cfg.Format != FormatParquet {
		return nil, fmt.Errorf("inventory: cannot write format %q", cfg.Format)
	}
	if cfg.SourceBucket == "" || cfg.DestinationBucket == "" || cfg.ConfigID == "" {
		return nil, errors.New("inventory: SourceBucket, DestinationBucket and ConfigID are required")
	}
	set := cfg.Fields &^ versionFields
	if cfg.AllVersions {
		set |= versionFields
	}
	fs := selectFields(set)
	if cfg.ObjectsPerFile <= 0 {
		cfg.ObjectsPerFile = 1_000_000
	}
	if cfg.RowsPerRowGroup <= 0 {
		// parquet-go would otherwise hold a whole data file's pages in
		// memory until Close.
		cfg.RowsPerRowGroup = 100_000
	}
	created := cfg.CreationTime
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC().Truncate(time.Millisecond)
	w := &Writer{
		sink:    sink,
		cfg:     cfg,
		fields:  fs,
		base:    path.Join(strings.Trim(cfg.DestinationPrefix, "/"), cfg.SourceBucket, cfg.ConfigID),
		created: created,
	}
	if cfg.Format == FormatParquet {
		w.pqSch = parquetSchema(fs)
	}
	return w, nil
}

// ConfigKey returns the key of the configuration's directory, the one whose
// newest dated report a reader opens.
func (w *Writer) ConfigKey() string { return w.base }

// Add appends one object. An empty Bucket stands for the source bucket.
func (w *Writer) Add(ctx context.Context, o Object) error {
	if w.closed {
		return errors.New("inventory: writer is closed")
	}
	if o.Bucket == "" {
		o.Bucket = w.cfg.SourceBucket
	}
	if w.cur.f == nil {
		if err := w.openFile(); err != nil {
			return err
		}
	}
	var err error
	if w.cfg.Format == FormatCSV {
		err = w.writeCSV(&o)
	} else {
		err = w.writeParquet(&o)
	}
	if err != nil {
		return fmt.Errorf("inventory: writing %s: %w", w.cur.key, err)
	}
	w.inFile++
	if w.inFile >= w.cfg.ObjectsPerFile {
		return w.closeFile(ctx)
	}
	return nil
}

// Close puts the last data file, then manifest.json, manifest.checksum and
// the hive symlink.txt. It returns the manifest's key.
func (w *Writer) Close(ctx context.Context) (string, error) {
	if w.closed {
		return "", errors.New("inventory: writer is closed")
	}
	if err := w.closeFile(ctx); err != nil {
		w.abort()
		return "", err
	}
	w.closed = true
	m := &Manifest{
		SourceBucket:      w.cfg.SourceBucket,
		DestinationBucket: "arn:aws:s3:::" + w.cfg.DestinationBucket,
		Version:           ManifestVersion,
		CreationTimestamp: strconv.FormatInt(w.created.UnixMilli(), 10),
		FileFormat:        w.cfg.Format,
		Files:             w.files,
	}
	if m.Files == nil {
		m.Files = []File{}
	}
	if w.cfg.Format == FormatCSV {
		m.FileSchema = csvFileSchema(w.fields)
	} else {
		m.FileSchema = parquetFileSchema(w.fields)
	}
	data, err := marshalManifest(m)
	if err != nil {
		return "", err
	}
	sum := md5.Sum(data)
	dir := path.Join(w.base, w.created.Format("2006-01-02T15-04Z"))
	manifestKey := path.Join(dir, "manifest.json")
	var sym strings.Builder
	for _, f := range w.files {
		fmt.Fprintf(&sym, "s3://%s/%s\n", w.cfg.DestinationBucket, f.Key)
	}
	hive := path.Join(w.base, "hive", "dt="+w.created.Format("2006-01-02-15-04"), "symlink.txt")
	// The checksum goes before the manifest: a reader that finds a
	// manifest.json always finds its checksum.
	for _, p := range []struct {
		key  string
		data []byte
	}{
		{path.Join(dir, "manifest.checksum"), []byte(hex.EncodeToString(sum[:]))},
		{manifestKey, data},
		{hive, []byte(sym.String())},
	} {
		if err := w.sink.Put(ctx, p.key, bytes.NewReader(p.data), int64(len(p.data))); err != nil {
			return "", fmt.Errorf("inventory: %w", err)
		}
	}
	return manifestKey, nil
}

// Abort gives up the report: the data file being built is removed and the
// manifest is never put (data files already put stay, unreferenced, as an
// interrupted AWS delivery leaves them).
func (w *Writer) Abort() {
	w.abort()
	w.closed = true
}

// Files returns the data files put so far.
func (w *Writer) Files() []File { return append([]File(nil), w.files...) }

// dataFile is the data file being written: bytes go through an MD5 hash and
// a byte counter on their way to a temporary file.
type dataFile struct {
	key string
	f   *os.File
	buf *bufio.Writer
	sum hash.Hash
	n   countingWriter
	gz  *gzip.Writer
	pq  *parquet.Writer
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func (w *Writer) openFile() error {
	ext := ".csv.gz"
	if w.cfg.Format == FormatParquet {
		ext = ".parquet"
	}
	f, err := os.CreateTemp(w.cfg.TempDir, "inventory-w-*")
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	w.cur = dataFile{key: path.Join(w.base, "data", newUUID()+ext), f: f, sum: md5.New()}
	w.cur.buf = bufio.NewWriterSize(f, 256<<10)
	sink := io.MultiWriter(w.cur.buf, w.cur.sum, &w.cur.n)
	if w.cfg.Format == FormatCSV {
		w.cur.gz = gzip.NewWriter(sink)
	} else {
		w.cur.pq = parquet.NewWriter(sink,
			w.pqSch,
			parquet.Compression(&parquet.Snappy),
			parquet.CreatedBy("keymigrate-inventory", "0", ""),
			parquet.MaxRowsPerRowGroup(w.cfg.RowsPerRowGroup),
		)
	}
	w.inFile = 0
	return nil
}

// closeFile finishes the current data file and puts it.
func (w *Writer) closeFile(ctx context.Context) error {
	if w.cur.f == nil {
		return nil
	}
	defer w.abort()
	var err error
	if w.cur.gz != nil {
		err = w.cur.gz.Close()
	} else {
		err = w.flushParquetRows()
		if cerr := w.cur.pq.Close(); err == nil {
			err = cerr
		}
	}
	if ferr := w.cur.buf.Flush(); err == nil {
		err = ferr
	}
	if err == nil {
		_, err = w.cur.f.Seek(0, io.SeekStart)
	}
	if err == nil {
		err = w.sink.Put(ctx, w.cur.key, w.cur.f, w.cur.n.n)
	}
	if err != nil {
		return fmt.Errorf("inventory: writing %s: %w", w.cur.key, err)
	}
	w.files = append(w.files, File{
		Key:         w.cur.key,
		Size:        w.cur.n.n,
		MD5Checksum: hex.EncodeToString(w.cur.sum.Sum(nil)),
	})
	return nil
}

// abort drops the current data file's temporary file.
func (w *Writer) abort() {
	if w.cur.f != nil {
		w.cur.f.Close()
		os.Remove(w.cur.f.Name())
	}
	w.cur = dataFile{}
	w.rowBuf = w.rowBuf[:0]
}

// writeCSV writes one line in AWS's CSV style: every value in double quotes,
// absent values as "", the key URL-encoded, times as ISO 8601 with
// milliseconds in UTC, booleans as true/false, no header row.
func (w *Writer) writeCSV(o *Object) error {
	line := w.csvLine[:0]
	for i, f := range w.fields {
		if i > 0 {
			line = append(line, ',')
		}
		line = append(line, '"')
		var v string
		switch f.kind {
		case kString:
			v = *f.str(o)
			if f.bit == FieldKey {
				v = EncodeKey(v)
			} else if f.bit == FieldETag {
				v = strings.Trim(v, `"`)
			}
		case kInt64:
			if !(o.IsDeleteMarker && f.bit == FieldSize) {
				v = strconv.FormatInt(*f.i64(o), 10)
			}
		case kBool:
			v = strconv.FormatBool(*f.bln(o))
		case kTime:
			if t := *f.tim(o); !t.IsZero() {
				v = t.UTC().Format("2006-01-02T15:04:05.000Z")
			}
		}
		line = append(line, strings.ReplaceAll(v, `"`, `""`)...)
		line = append(line, '"')
	}
	line = append(line, '\n')
	w.csvLine = line
	_, err := w.cur.gz.Write(line)
	return err
}

// writeParquet buffers one row; rows go to parquet-go in batches.
func (w *Writer) writeParquet(o *Object) error {
	row := make(parquet.Row, 0, len(w.fields))
	for i, f := range w.fields {
		var v parquet.Value
		null := false
		switch f.kind {
		case kString:
			s := *f.str(o)
			if f.bit == FieldETag {
				s = strings.Trim(s, `"`)
			}
			if s == "" && !f.required {
				null = true
			} else {
				v = parquet.ByteArrayValue([]byte(s))
			}
		case kInt64:
			if o.IsDeleteMarker && f.bit == FieldSize {
				null = true
			} else {
				v = parquet.Int64Value(*f.i64(o))
			}
		case kBool:
			v = parquet.BooleanValue(*f.bln(o))
		case kTime:
			if t := *f.tim(o); t.IsZero() {
				null = true
			} else {
				v = parquet.Int64Value(t.UnixMilli())
			}
		}
		switch {
		case null:
			v = parquet.NullValue().Level(0, 0, i)
		case f.required:
			v = v.Level(0, 0, i)
		default:
			v = v.Level(0, 1, i)
		}
		row = append(row, v)
	}
	w.rowBuf = append(w.rowBuf, row)
	if len(w.rowBuf) >= 512 {
		return w.flushParquetRows()
	}
	return nil
}

func (w *Writer) flushParquetRows() error {
	if len(w.rowBuf) == 0 {
		return nil
	}
	_, err := w.cur.pq.WriteRows(w.rowBuf)
	w.rowBuf = w.rowBuf[:0]
	return err
}

// newUUID returns a random (version 4) UUID string like the data file names
// in AWS's examples.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
