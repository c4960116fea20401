package inventory

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Options tune a Reader.
type Options struct {
	// SourceBucket, if set, is the bucket the report must describe: a
	// manifest whose sourceBucket differs is refused (an inventory of the
	// wrong bucket would make every object look missing, or worse).
	SourceBucket string
	// TempDir holds the copies of data files read from a remote Source
	// (default os.TempDir()). See Reader.ReadFile for its size.
	TempDir string
}

// Reader reads an inventory report: its manifest and its records. It is safe
// for concurrent use: Files and ReadFile let callers read data files in
// parallel, or split them across machines.
type Reader struct {
	src         Source
	manifestKey string
	m           *Manifest
	fields      FieldSet
	opts        Options
}

// Open reads and verifies the manifest.json at manifestKey in src and the
// manifest.checksum beside it. A missing or mismatching manifest.checksum is
// refused (ErrChecksum): it is the only protection of the data files' own
// checksums.
func Open(ctx context.Context, src Source, manifestKey string, opts Options) (*Reader, error) {
	m, err := loadManifest(ctx, src, manifestKey)
	if err != nil {
		return nil, err
	}
	return newReader(src, manifestKey, m, opts)
}

// OpenLocal opens a report in a local directory tree that mirrors the
// destination bucket (as `aws s3 sync s3://dest/prefix ./dir` leaves it),
// given the path of its manifest.json. The data files are looked up under
// the nearest ancestor directory that holds the first of them.
func OpenLocal(ctx context.Context, manifestPath string, opts Options) (*Reader, error) {
	dir := NewDir(filepath.Dir(manifestPath))
	m, err := loadManifest(ctx, dir, filepath.Base(manifestPath))
	if err != nil {
		return nil, err
	}
	root, key, err := bucketRoot(manifestPath, m)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", manifestPath, err)
	}
	return newReader(NewDir(root), key, m, opts)
}

func loadManifest(ctx context.Context, src Source, manifestKey string) (*Manifest, error) {
	where := fmt.Sprintf("inventory %s/%s", src, manifestKey)
	data, err := readAll(ctx, src, manifestKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	sum, err := readAll(ctx, src, checksumKey(manifestKey))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest.checksum (copy it with the manifest): %w", where, err)
	}
	m, err := ParseManifest(data, sum)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return m, nil
}

func newReader(src Source, manifestKey string, m *Manifest, opts Options) (*Reader, error) {
	where := fmt.Sprintf("inventory %s/%s", src, manifestKey)
	if opts.SourceBucket != "" && m.SourceBucket != opts.SourceBucket {
		return nil, fmt.Errorf("%s: %w: the report is of bucket %q, not %q", where, ErrFormat, m.SourceBucket, opts.SourceBucket)
	}
	fields, err := schemaFields(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &Reader{src: src, manifestKey: manifestKey, m: m, fields: fields, opts: opts}, nil
}

// maxManifest bounds what is read of a manifest: a manifest lists one entry
// per data file (about 150 bytes), so 64 MiB is 400,000 data files.
const maxManifest = 64 << 20

func readAll(ctx context.Context, src Source, key string) ([]byte, error) {
	rc, err := src.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrFormat, key, maxManifest)
	}
	return b, nil
}

// Manifest returns the parsed manifest.json.
func (r *Reader) Manifest() *Manifest { return r.m }

// ManifestKey returns the key of manifest.json in the Source.
func (r *Reader) ManifestKey() string { return r.manifestKey }

// Source returns where the report is read from.
func (r *Reader) Source() Source { return r.src }

// Fields returns the columns the report has (from the manifest's
// fileSchema). A field it lacks is zero in every record.
func (r *Reader) Fields() FieldSet { return r.fields }

// Files returns the report's data files in manifest order. Each can be read
// on its own with ReadFile: split them across goroutines or machines (by
// index modulo the shard count, say) to read a large report in parallel.
func (r *Reader) Files() []File { return append([]File(nil), r.m.Files...) }

var pqColumn = regexp.MustCompile(`(?:required|optional|repeated)\s+\w+\s+(\w+)`)

// schemaColumns lists the column names in the manifest's fileSchema (CSV
// names, or Parquet names). The Parquet schema is only scanned for its
// column names, never parsed strictly: its spacing differs between AWS's
// documents.
func schemaColumns(m *Manifest) []string {
	if m.FileFormat == FormatParquet {
		var out []string
		for _, sm := range pqColumn.FindAllStringSubmatch(m.FileSchema, -1) {
			out = append(out, sm[1])
		}
		return out
	}
	parts := strings.Split(m.FileSchema, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// schemaFields returns the known fields among the schema's columns. Unknown
// columns are allowed (AWS adds optional fields over time, some without a
// documented column name) and skipped; a schema without Bucket and Key, or
// naming a column twice, is refused.
func schemaFields(m *Manifest) (FieldSet, error) {
	var s FieldSet
	for _, c := range schemaColumns(m) {
		f := lookupCSVField(c)
		if m.FileFormat == FormatParquet {
			f = fieldByParquet[c]
		}
		if f == nil {
			continue
		}
		if s.Has(f.bit) {
			return 0, fmt.Errorf("%w: fileSchema names %s twice", ErrFormat, c)
		}
		s |= f.bit
	}
	if !s.Has(FieldBucket | FieldKey) {
		return 0, fmt.Errorf("%w: fileSchema %q lacks Bucket or Key", ErrFormat, m.FileSchema)
	}
	return s, nil
}

// errStop is how Objects tells ReadFile that the consumer stopped.
var errStop = errors.New("stop")

// Objects returns an iterator over every record of every data file, in
// manifest order, one file after the other. Memory stays bounded whatever
// the report's size (a CSV line, or the pages of one Parquet row group). The
// first error is yielded once and ends the iteration; records of a data file
// are only yielded once the whole file matched its size and MD5checksum.
func (r *Reader) Objects(ctx context.Context) iter.Seq2[Object, error] {
	return func(yield func(Object, error) bool) {
		for _, f := range r.m.Files {
			err := r.ReadFile(ctx, f, func(o Object) error {
				if !yield(o, nil) {
					return errStop
				}
				return nil
			})
			if errors.Is(err, errStop) {
				return
			}
			if err != nil {
				yield(Object{}, err)
				return
			}
		}
	}
}

// ReadFile calls fn for every record of the data file f (one of Files), in
// file order. The file is checked against the size and MD5checksum of the
// manifest before fn is called at all: a damaged file is an ErrChecksum
// error and yields no record. An error from fn stops the read and is
// returned as it is.
//
// A data file of a remote Source is copied to a temporary file in
// Options.TempDir while it is hashed, then parsed from there (Parquet needs
// random access anyway, and a file is only downloaded once): that costs disk
// space of the size of one data file (File.Size, compressed) per ReadFile in
// progress, removed when it returns. A local data file is hashed and parsed
// in place.
func (r *Reader) ReadFile(ctx context.Context, f File, fn func(Object) error) error {
	var fnErr error
	call := func(o Object) error {
		if err := fn(o); err != nil {
			fnErr = err
			return err
		}
		return nil
	}
	err := r.readFile(ctx, f, call)
	if fnErr != nil && errors.Is(err, fnErr) {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("inventory %s: data file %s: %w", r.src, f.Key, err)
	}
	return nil
}

func (r *Reader) readFile(ctx context.Context, f File, fn func(Object) error) error {
	fh, done, err := r.fetch(ctx, f)
	if err != nil {
		return err
	}
	defer done()
	if r.m.FileFormat == FormatCSV {
		return r.readCSV(ctx, fh, fn)
	}
	return r.readParquet(ctx, fh, f.Size, fn)
}

// fetch returns the verified content of data file f, positioned at its start,
// and a function that releases it.
func (r *Reader) fetch(ctx context.Context, f File) (*os.File, func(), error) {
	rc, err := r.src.Open(ctx, f.Key)
	if err != nil {
		return nil, nil, err
	}
	if local, ok := rc.(*os.File); ok {
		if err := verify(local, io.Discard, f); err != nil {
			local.Close()
			return nil, nil, err
		}
		if _, err := local.Seek(0, io.SeekStart); err != nil {
			local.Close()
			return nil, nil, err
		}
		return local, func() { local.Close() }, nil
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(r.opts.TempDir, "inventory-*")
	if err != nil {
		return nil, nil, fmt.Errorf("temporary copy: %w", err)
	}
	done := func() { tmp.Close(); os.Remove(tmp.Name()) }
	if err := verify(rc, tmp, f); err != nil {
		done()
		return nil, nil, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		done()
		return nil, nil, err
	}
	return tmp, done, nil
}

// verify copies src to dst while hashing it and checks its size and MD5
// against the manifest. It reads at most one byte more than the manifest's
// size, so a wrong (huge) object is not downloaded whole.
func verify(src io.Reader, dst io.Writer, f File) error {
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(dst, h), io.LimitReader(src, f.Size+1))
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if n != f.Size {
		if n > f.Size {
			return fmt.Errorf("%w: larger than the %d bytes the manifest says", ErrChecksum, f.Size)
		}
		return fmt.Errorf("%w: %d bytes, the manifest says %d", ErrChecksum, n, f.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, f.MD5Checksum) {
		return fmt.Errorf("%w: MD5 %s, the manifest says %s", ErrChecksum, got, f.MD5Checksum)
	}
	return nil
}

// checkRecord applies the checks and the clean-up every record gets,
// whatever the format.
func (r *Reader) checkRecord(o *Object) error {
	// AWS writes ETags without quotes (observed); a copy that kept the
	// quotes of the S3 API still compares equal.
	o.ETag = strings.Trim(o.ETag, `"`)
	if o.Bucket != r.m.SourceBucket {
		return fmt.Errorf("%w: a record of bucket %q in the report of %q", ErrFormat, o.Bucket, r.m.SourceBucket)
	}
	if o.Key == "" {
		return fmt.Errorf("%w: a record with an empty key", ErrFormat)
	}
	return nil
}
