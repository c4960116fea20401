// Package inventory is the operator's side of S3 Inventory reports: it loads
// a report into the ledger's database (migratectl inventory load, and plan,
// verify and cleanup with --inventory) and says which report is loaded
// (migratectl inventory status).
//
// A load is resumable and can be split: Load runs Options.Workers goroutines,
// each claiming the next unloaded data file of the report in the ledger,
// streaming its records into Postgres (COPY) and marking it loaded in the
// same transaction; several processes on several machines running Load on
// the same report share its files, and a killed loader's file is loaded
// again by the next claim. Memory is one record (or one Parquet page) per
// worker; disk is one data file per worker for a report in S3. The report
// must be of the migration's bucket. Reading the objects back is the
// ledger's (ledger.Store.InventoryGetMany, InventoryObjectPage).
package inventory

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	s3inv "github.com/keymigrate/keymigrate/internal/pipeline/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// Options tune a load.
type Options struct {
	// Bucket is the migration's bucket: a report of another bucket is
	// refused (BucketError).
	Bucket string
	// Workers is how many data files this process loads at once (default 4).
	Workers int
	// TempDir holds the copies of data files read from S3 (one per worker;
	// default os.TempDir()).
	TempDir string
	// ReplaceNewer lets an older report replace the loaded one (normally
	// refused: ledger.InventoryOlderError).
	ReplaceNewer bool
	// Begun, if set, is called once the report is begun, before its files
	// load (not when it is loaded already): the command says which report it
	// loads, and its date.
	Begun func(ledger.InventoryReport)
	// Progress, if set, is called after each data file this process loaded
	// (from the worker that loaded it, one call at a time).
	Progress func(Progress)
}

// Progress is where a load is after one more data file.
type Progress struct {
	// Report is the load as the ledger has it: files and rows loaded by
	// every loader of the report, in every process.
	Report ledger.InventoryReport
	// File is the data file just loaded.
	File ledger.InventoryFileLoad
	// Files and Rows are what this process loaded so far, in Elapsed.
	Files   int
	Rows    int64
	Elapsed time.Duration
}

// RowsPerSecond is this process's rate so far.
func (p Progress) RowsPerSecond() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Rows) / p.Elapsed.Seconds()
}

// Result is a finished load.
type Result struct {
	// Report is the loaded report.
	Report ledger.InventoryReport
	// AlreadyLoaded says the report was loaded before this call: nothing was
	// read.
	AlreadyLoaded bool
	// Files and Rows are what this process loaded, in Elapsed.
	Files   int
	Rows    int64
	Elapsed time.Duration
}

// BucketError refuses a report of another bucket than the migration's:
// every object would look missing (or another bucket's objects present).
type BucketError struct {
	Location        string
	ReportBucket    string
	MigrationBucket string
}

func (e *BucketError) Error() string {
	return fmt.Sprintf("inventory %s is a report of bucket %q, but this migration's bucket is %q: "+
		"give the report of an inventory configured on %q (its reports are under …/%s/<configuration-ID>/), or migrate bucket %q instead",
		e.Location, e.ReportBucket, e.MigrationBucket, e.MigrationBucket, e.MigrationBucket, e.ReportBucket)
}

// RequiredFields are the optional fields a report must carry: what plan,
// verify and cleanup compare. LastModifiedDate, IsMultipartUploaded and
// EncryptionStatus are loaded when the report has them.
const RequiredFields = s3inv.FieldSize | s3inv.FieldETag | s3inv.FieldStorageClass

// Open parses location (as --inventory takes it: s3://bucket/…/manifest.json,
// its report or configuration directory, or a local directory) and opens the
// report, checking it is of bucket and carries RequiredFields. client reads
// an S3 location (nil for a local one).
func Open(ctx context.Context, client s3inv.S3API, location, bucket, tempDir string) (*s3inv.Reader, ledger.InventoryManifest, error) {
	loc, err := s3inv.Parse(location)
	if err != nil {
		return nil, ledger.InventoryManifest{}, err
	}
	r, err := loc.Open(ctx, client, s3inv.Options{TempDir: tempDir})
	if err != nil {
		return nil, ledger.InventoryManifest{}, err
	}
	m := r.Manifest()
	where := r.Source().String() + "/" + r.ManifestKey()
	if !loc.IsS3() {
		where = filepath.Join(r.Source().String(), filepath.FromSlash(r.ManifestKey()))
	}
	if m.SourceBucket != bucket {
		return nil, ledger.InventoryManifest{}, &BucketError{Location: where, ReportBucket: m.SourceBucket, MigrationBucket: bucket}
	}
	if missing := RequiredFields &^ r.Fields(); missing != 0 {
		return nil, ledger.InventoryManifest{}, fmt.Errorf("inventory %s has no %s column: configure the inventory's optional fields %s (and LastModifiedDate, IsMultipartUploaded, EncryptionStatus), and load its next report",
			where, missing, RequiredFields)
	}
	created, err := m.Created()
	if err != nil {
		return nil, ledger.InventoryManifest{}, fmt.Errorf("inventory %s: %w", where, err)
	}
	im := ledger.InventoryManifest{Location: where, SourceBucket: m.SourceBucket, Format: string(m.FileFormat), CreatedAt: created}
	for i, f := range m.Files {
		im.Files = append(im.Files, ledger.InventoryFile{Index: i, Key: f.Key, Size: f.Size, MD5: f.MD5Checksum})
	}
	return r, im, nil
}

// Load loads the report at location into the ledger, unless it is the
// loaded report already, and returns it once every data file is loaded (by
// this process or others at the same time).
func Load(ctx context.Context, st *ledger.Store, client s3inv.S3API, location string, o Options) (Result, error) {
	start := time.Now()
	if o.Workers <= 0 {
		o.Workers = 4
	}
	r, im, err := Open(ctx, client, location, o.Bucket, o.TempDir)
	if err != nil {
		return Result{}, err
	}
	if o.ReplaceNewer {
		cur, ok, err := st.InventoryCurrent(ctx)
		if err != nil {
			return Result{}, err
		}
		if ok && cur.CreatedAt.After(im.CreatedAt) {
			if err := st.InventoryForget(ctx); err != nil {
				return Result{}, err
			}
		}
	}
	rep, err := st.InventoryReportBegin(ctx, im)
	if err != nil {
		return Result{}, err
	}
	if rep.Loaded() {
		return Result{Report: rep, AlreadyLoaded: true, Elapsed: time.Since(start)}, nil
	}
	if o.Begun != nil {
		o.Begun(rep)
	}
	res := Result{Report: rep}
	read := readFunc(r)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for range o.Workers {
		g.Go(func() error {
			for {
				l, ok, err := st.InventoryLoadNextFile(gctx, rep, read)
				if err != nil || !ok {
					return err
				}
				if err := progress(gctx, st, &mu, &res, l, start, o.Progress); err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	latest, ok, err := st.InventoryLatest(ctx)
	if err != nil {
		return res, err
	}
	if !ok || latest.ID != rep.ID {
		return res, fmt.Errorf("inventory %s: %w", im.Location, ledger.ErrInventoryReplaced)
	}
	res.Report, res.Elapsed = latest, time.Since(start)
	return res, nil
}

// progress counts a loaded file and reports it.
func progress(ctx context.Context, st *ledger.Store, mu *sync.Mutex, res *Result, l ledger.InventoryFileLoad, start time.Time, fn func(Progress)) error {
	mu.Lock()
	defer mu.Unlock()
	res.Files++
	res.Rows += l.Rows
	if fn == nil {
		return nil
	}
	cur, _, err := st.InventoryCurrent(ctx)
	if err != nil {
		return err
	}
	fn(Progress{Report: cur, File: l, Files: res.Files, Rows: res.Rows, Elapsed: time.Since(start)})
	return nil
}

// errStop ends a ReadFile whose consumer stopped pulling.
var errStop = errors.New("stop")

// readFunc streams a data file of r as the ledger's objects.
func readFunc(r *s3inv.Reader) ledger.InventoryReadFunc {
	files, fields := r.Files(), r.Fields()
	return func(ctx context.Context, f ledger.InventoryFile) iter.Seq2[ledger.InventoryObject, error] {
		return func(yield func(ledger.InventoryObject, error) bool) {
			if f.Index < 0 || f.Index >= len(files) || files[f.Index].Key != f.Key {
				yield(ledger.InventoryObject{}, fmt.Errorf("data file %d (%s) is not in the manifest read", f.Index, f.Key))
				return
			}
			err := r.ReadFile(ctx, files[f.Index], func(o s3inv.Object) error {
				obj, keep, err := convert(o, fields)
				if err != nil || !keep {
					return err
				}
				if !yield(obj, nil) {
					return errStop
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				yield(ledger.InventoryObject{}, err)
			}
		}
	}
}

// convert turns a record into the ledger's object; false for a record that
// is not a current object (an older version, or a delete marker, in a
// report of all versions).
func convert(o s3inv.Object, fields s3inv.FieldSet) (ledger.InventoryObject, bool, error) {
	if (fields.Has(s3inv.FieldIsDeleteMarker) && o.IsDeleteMarker) || (fields.Has(s3inv.FieldIsLatest) && !o.IsLatest) {
		return ledger.InventoryObject{}, false, nil
	}
	if !o.Present.Has(RequiredFields) {
		return ledger.InventoryObject{}, false, fmt.Errorf("record of %q lacks %s", o.Key, RequiredFields&^o.Present)
	}
	multipart := o.IsMultipartUploaded
	if !fields.Has(s3inv.FieldIsMultipartUploaded) {
		multipart = isMultipartETag(o.ETag)
	}
	return ledger.InventoryObject{
		Key: o.Key, Size: o.Size, ETag: o.ETag, LastModified: o.LastModified, StorageClass: o.StorageClass,
		Multipart: multipart, EncryptionStatus: o.EncryptionStatus,
	}, true, nil
}

// isMultipartETag reports whether an ETag is that of a multipart upload: the
// MD5 of the parts' MD5s, then "-N".
func isMultipartETag(etag string) bool {
	etag = strings.Trim(etag, `"`)
	i := strings.LastIndexByte(etag, '-')
	if i < 0 || i == len(etag)-1 {
		return false
	}
	for _, c := range etag[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
