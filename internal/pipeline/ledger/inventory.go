package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// An S3 Inventory report in Postgres (issue 16 §3). At 3.4 × 10^9 objects
// plan, verify and cleanup cannot list the bucket or send a HEAD per object,
// nor hold a report in memory: the report is loaded into
// keymigrate.inventory_objects and the operations join with it.
//
// Loading is resumable and can be split across processes and machines: each
// data file of the report has a row in inventory_files; a loader claims the
// next unloaded one with FOR UPDATE SKIP LOCKED, COPYs its records and marks
// it loaded in the same transaction. A loader killed mid-file rolls back its
// rows and releases the file, which the next claim redoes; no file is loaded
// twice (and the key's primary key refuses a record loaded twice anyway).
//
// One report's objects are held at a time. Beginning a new report replaces
// the current one: in one transaction it deletes the current report's file
// rows, which waits for the files being loaded (their loaders hold those rows
// FOR UPDATE until they commit), then empties inventory_objects and makes the
// new report current. A loader of the replaced report then finds no file to
// claim and gets ErrInventoryReplaced: its rows never land among the new
// report's. Readers take inventory_objects in ACCESS SHARE mode before they
// check which report is current, so a replacement (whose TRUNCATE needs
// ACCESS EXCLUSIVE) waits for the page being read and never empties the
// table under it.
//
// inventory_objects is UNLOGGED: a Postgres crash, or a failover to a
// replica, empties it. The sentinel table inventory_loaded, unlogged too,
// loses its row at the same moment; a report whose sentinel is gone is
// reported Emptied, readers get ErrInventoryEmptied, and the next load
// (InventoryReportBegin or InventoryLoadNextFile) marks every file unloaded
// again and refills the table.

// InventoryObject is one object of the loaded report: the latest version of a
// key as the report saw it at its date (InventoryReport.CreatedAt).
type InventoryObject struct {
	Key  string
	Size int64
	// ETag is in the form the S3 API returns it, with its double quotes, so
	// that it compares equal to objstore's ETags and to those the ledger
	// recorded (the report has none; the table stores it without them).
	ETag string
	// LastModified is zero when the report does not carry LastModifiedDate.
	LastModified time.Time
	StorageClass string
	// Multipart says the object was uploaded in parts (IsMultipartUploaded,
	// or, in a report without that field, an ETag ending in -N).
	Multipart bool
	// EncryptionStatus is SSE-S3, SSE-C, SSE-KMS or NOT-SSE; empty when the
	// report does not carry it.
	EncryptionStatus string
}

// InventoryFile is one data file of a report, as its manifest lists it.
type InventoryFile struct {
	// Index is the file's position in the manifest.
	Index int
	Key   string
	Size  int64
	MD5   string
}

// InventoryManifest is what the ledger keeps of a report's manifest.json:
// enough to identify the report and to hand out its data files.
type InventoryManifest struct {
	// Location is where the manifest was read (s3://bucket/key or a local
	// path), for status.
	Location     string
	SourceBucket string
	Format       string
	// CreatedAt is the manifest's creationTimestamp: when AWS started the
	// scan the report describes.
	CreatedAt time.Time
	// Files are the data files in manifest order (their Index is ignored).
	Files []InventoryFile
}

// Fingerprint identifies the report whatever path it is read from, so that
// loaders on several machines (one reading s3://…, another a local copy)
// cooperate on the same report.
func (m InventoryManifest) Fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n%s\n", m.SourceBucket, m.CreatedAt.UnixMilli(), m.Format)
	for _, f := range m.Files {
		fmt.Fprintf(h, "%s\t%d\t%s\n", f.Key, f.Size, strings.ToLower(f.MD5))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// InventoryReport is a report the ledger knows, and how far its load is.
type InventoryReport struct {
	ID       int64
	Location string
	// CreatedAt is the report's creationTimestamp: the objects are what the
	// bucket held at that time (docs/inventory.md, staleness).
	CreatedAt    time.Time
	SourceBucket string
	Format       string
	// Files is the report's data files; LoadedFiles how many are in
	// inventory_objects; Rows how many objects those hold.
	Files       int
	LoadedFiles int
	Rows        int64
	// LoadedAt is when the last file was loaded; nil while loading.
	LoadedAt *time.Time
	BeganAt  time.Time
	// Current says its objects are the ones inventory_objects holds (or is
	// being filled with); a replaced report is kept for the record only.
	Current bool
	// Emptied says a Postgres crash or failover emptied the objects of this
	// report (inventory_objects is unlogged): LoadedFiles and Rows are then
	// 0 and LoadedAt nil; load it again.
	Emptied bool
}

// Loaded reports whether every data file of the report is loaded and its
// objects are still there: only then do reads answer.
func (r InventoryReport) Loaded() bool { return r.Current && r.LoadedAt != nil && !r.Emptied }

// InventoryFileLoad is what one InventoryLoadNextFile call loaded.
type InventoryFileLoad struct {
	File    InventoryFile
	Rows    int64
	Elapsed time.Duration
}

// ErrInventoryNotLoaded is a read while no report is completely loaded (none
// was, or the current one is still loading).
var ErrInventoryNotLoaded = errors.New("no S3 Inventory report is completely loaded")

// ErrInventoryReplaced is a load or a read of a report that is no longer the
// current one: a newer report was begun since.
var ErrInventoryReplaced = errors.New("the S3 Inventory report was replaced by another one (a newer report's load began)")

// ErrInventoryEmptied is a read of a report whose objects a Postgres crash or
// failover emptied (the table is unlogged).
var ErrInventoryEmptied = errors.New("the loaded S3 Inventory report's objects are gone (a Postgres crash or failover empties the unlogged table)")

// InventoryOlderError refuses to replace the current report with an older
// one: two operators (or a stale script) loading different reports would
// otherwise take turns emptying each other's load.
type InventoryOlderError struct {
	Current, Given time.Time
}

func (e *InventoryOlderError) Error() string {
	return fmt.Sprintf("the S3 Inventory report of %s is older than the current one (%s): load a report at least as recent, or forget the current one first",
		e.Given.UTC().Format(time.RFC3339), e.Current.UTC().Format(time.RFC3339))
}

// inventoryLock serialises the beginning, replacement and recovery of
// reports (an advisory transaction lock; loaders and readers never take it).
const inventoryLock = 0x6b6d696e // "kmin"

// errSentinelGone is a load that found the current report's sentinel gone:
// a crash emptied its objects, and the files must be marked unloaded first.
var errSentinelGone = errors.New("inventory sentinel gone")

const inventoryReportColumns = `r.id, r.location, r.created_at, r.source_bucket, r.format, r.files,
 CASE WHEN r.loaded_at IS NOT NULL THEN r.files
      ELSE (SELECT count(*) FROM keymigrate.inventory_files f WHERE f.report_id = r.id AND f.loaded_at IS NOT NULL)::int END,
 coalesce(r.rows, (SELECT sum(f.rows) FROM keymigrate.inventory_files f WHERE f.report_id = r.id), 0)::bigint,
 r.loaded_at, r.began_at, r.is_current,
 r.is_current AND NOT EXISTS (SELECT 1 FROM keymigrate.inventory_loaded l WHERE l.report_id = r.id)`

func scanInventoryReport(row pgx.CollectableRow) (InventoryReport, error) {
	var r InventoryReport
	err := row.Scan(&r.ID, &r.Location, &r.CreatedAt, &r.SourceBucket, &r.Format, &r.Files, &r.LoadedFiles, &r.Rows, &r.LoadedAt, &r.BeganAt, &r.Current, &r.Emptied)
	if r.Emptied {
		r.LoadedFiles, r.Rows, r.LoadedAt = 0, 0, nil
	}
	r.CreatedAt, r.BeganAt = r.CreatedAt.UTC(), r.BeganAt.UTC()
	return r, err
}

// inventoryReportWhere returns the reports matching where (a condition on r).
func (s *Store) inventoryReportWhere(ctx context.Context, q pgx.Tx, where string, args ...any) ([]InventoryReport, error) {
	sql := `SELECT ` + inventoryReportColumns + ` FROM keymigrate.inventory_reports r WHERE ` + where
	var rows pgx.Rows
	var err error
	if q != nil {
		rows, err = q.Query(ctx, sql, args...)
	} else {
		rows, err = s.pool.Query(ctx, sql, args...)
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanInventoryReport)
}

func (s *Store) inventoryReportOne(ctx context.Context, where string, args ...any) (InventoryReport, bool, error) {
	rs, err := s.inventoryReportWhere(ctx, nil, where, args...)
	if err != nil || len(rs) == 0 {
		return InventoryReport{}, false, err
	}
	return rs[0], true, nil
}

// InventoryCurrent returns the current report however far its load is (for
// status and the loaders); false when no report was ever begun.
func (s *Store) InventoryCurrent(ctx context.Context) (InventoryReport, bool, error) {
	r, ok, err := s.inventoryReportOne(ctx, `r.is_current`)
	if err != nil {
		return r, false, fmt.Errorf("read the current inventory report: %w", err)
	}
	return r, ok, nil
}

// InventoryLatest returns the report whose objects are completely loaded and
// still there; false when there is none (never loaded, a new report still
// loading, or emptied by a crash: InventoryCurrent says which).
func (s *Store) InventoryLatest(ctx context.Context) (InventoryReport, bool, error) {
	r, ok, err := s.InventoryCurrent(ctx)
	if err != nil || !ok || !r.Loaded() {
		return InventoryReport{}, false, err
	}
	return r, true, nil
}

// InventoryReports returns every report the ledger knows, newest first.
func (s *Store) InventoryReports(ctx context.Context) ([]InventoryReport, error) {
	rs, err := s.inventoryReportWhere(ctx, nil, `true ORDER BY r.created_at DESC, r.id DESC`)
	if err != nil {
		return nil, fmt.Errorf("list inventory reports: %w", err)
	}
	return rs, nil
}

// InventoryReportBegin makes the report of m the current one and returns it,
// ready for InventoryLoadNextFile. It is idempotent: loaders on several
// machines all call it, and all get the same report and share its files. If
// m is already current, nothing changes (except that a report a crash
// emptied is marked unloaded, to be loaded again). Otherwise the current
// report's objects are dropped (after the files being loaded are done) and m's
// files are recorded, unloaded; a report older than the current one is
// refused (InventoryOlderError; InventoryForget first to go back).
func (s *Store) InventoryReportBegin(ctx context.Context, m InventoryManifest) (InventoryReport, error) {
	fp := m.Fingerprint()
	// Fast path, without the locks: the report is current and intact (the
	// common case for the second and later loaders).
	if r, ok, err := s.inventoryReportOne(ctx, `r.is_current AND r.fingerprint = $1`, fp); err != nil {
		return InventoryReport{}, fmt.Errorf("begin inventory report %s: %w", m.Location, err)
	} else if ok && !r.Emptied {
		return r, nil
	}
	var id int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, inventoryLock); err != nil {
			return err
		}
		// The current report's row is locked against a concurrent finish or
		// recovery; deleting its file rows (inventoryDropCurrent) waits for
		// the loaders to commit the files they hold, and must come before
		// the TRUNCATE (a loader's COPY would otherwise wait for the
		// TRUNCATE's lock while the TRUNCATE's transaction waits for its row).
		var cur struct {
			id      int64
			fp      string
			created time.Time
		}
		err := tx.QueryRow(ctx, `SELECT id, fingerprint, created_at FROM keymigrate.inventory_reports WHERE is_current FOR UPDATE`).Scan(&cur.id, &cur.fp, &cur.created)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case cur.fp == fp:
			id = cur.id
			return inventoryRecoverLocked(ctx, tx, id)
		case m.CreatedAt.Before(cur.created):
			return &InventoryOlderError{Current: cur.created, Given: m.CreatedAt}
		default:
			if err := inventoryDropCurrent(ctx, tx, cur.id); err != nil {
				return err
			}
		}
		if err := inventoryEmpty(ctx, tx); err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `
INSERT INTO keymigrate.inventory_reports (fingerprint, location, source_bucket, format, created_at, files, is_current)
VALUES ($1, $2, $3, $4, $5, $6, true)
ON CONFLICT (fingerprint) DO UPDATE SET is_current = true, location = EXCLUDED.location, began_at = now(), loaded_at = NULL, rows = NULL
RETURNING id`, fp, m.Location, m.SourceBucket, m.Format, m.CreatedAt, len(m.Files)).Scan(&id)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM keymigrate.inventory_files WHERE report_id = $1`, id); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{Schema, "inventory_files"}, []string{"report_id", "idx", "key", "size", "md5"},
			pgx.CopyFromSlice(len(m.Files), func(i int) ([]any, error) {
				f := m.Files[i]
				return []any{id, i, f.Key, f.Size, strings.ToLower(f.MD5)}, nil
			})); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO keymigrate.inventory_loaded (report_id) VALUES ($1)`, id)
		return err
	})
	if err != nil {
		var older *InventoryOlderError
		if errors.As(err, &older) {
			return InventoryReport{}, err
		}
		return InventoryReport{}, fmt.Errorf("begin inventory report %s: %w", m.Location, err)
	}
	r, ok, err := s.inventoryReportOne(ctx, `r.id = $1`, id)
	if err == nil && !ok {
		err = ErrInventoryReplaced
	}
	if err != nil {
		return InventoryReport{}, fmt.Errorf("begin inventory report %s: %w", m.Location, err)
	}
	return r, nil
}

// InventoryForget drops the current report's objects and makes no report
// current, so that an older report can be loaded again. It waits for the
// files being loaded; their loaders then get ErrInventoryReplaced.
func (s *Store) InventoryForget(ctx context.Context) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, inventoryLock); err != nil {
			return err
		}
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM keymigrate.inventory_reports WHERE is_current FOR UPDATE`).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := inventoryDropCurrent(ctx, tx, id); err != nil {
			return err
		}
		return inventoryEmpty(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("forget the current inventory report: %w", err)
	}
	return nil
}

// inventoryDropCurrent makes report id no longer current and forgets its
// files (the report's row stays, for the record). The caller holds its row
// FOR UPDATE and empties the objects.
func inventoryDropCurrent(ctx context.Context, tx pgx.Tx, id int64) error {
	if _, err := tx.Exec(ctx, `UPDATE keymigrate.inventory_reports SET is_current = false WHERE id = $1`, id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM keymigrate.inventory_files WHERE report_id = $1`, id)
	return err
}

// inventoryEmpty drops every object and the sentinel. The sentinel's row is
// deleted, not truncated: loaders and readers read that table, and a
// TRUNCATE would wait for them while they wait for this transaction's row
// locks (a deadlock).
func inventoryEmpty(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `TRUNCATE keymigrate.inventory_objects`); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM keymigrate.inventory_loaded`)
	return err
}

// inventoryRecoverLocked marks every file of the current report id unloaded
// again if a crash emptied its objects (its sentinel is gone). The caller
// holds the advisory lock and the report's row FOR UPDATE. No loader copies
// meanwhile: a loader copies only after seeing the sentinel, and the crash
// that removed it ended every loader's transaction; the file rows are reset
// before the table is emptied anyway, in the order a replacement uses.
func inventoryRecoverLocked(ctx context.Context, tx pgx.Tx, id int64) error {
	var present bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keymigrate.inventory_loaded WHERE report_id = $1)`, id).Scan(&present); err != nil {
		return err
	}
	if present {
		return nil
	}
	for _, stmt := range []string{
		`UPDATE keymigrate.inventory_files SET loaded_at = NULL, rows = NULL, loader = NULL WHERE report_id = $1`,
		`UPDATE keymigrate.inventory_reports SET loaded_at = NULL, rows = NULL WHERE id = $1`,
		`TRUNCATE keymigrate.inventory_objects`,
		`DELETE FROM keymigrate.inventory_loaded`,
		`INSERT INTO keymigrate.inventory_loaded (report_id) VALUES ($1)`,
	} {
		var args []any
		if strings.Contains(stmt, "$1") {
			args = []any{id}
		}
		if _, err := tx.Exec(ctx, stmt, args...); err != nil {
			return err
		}
	}
	return nil
}

// inventoryRecover is inventoryRecoverLocked in a transaction of its own.
func (s *Store) inventoryRecover(ctx context.Context, r InventoryReport) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, inventoryLock); err != nil {
			return err
		}
		var current bool
		err := tx.QueryRow(ctx, `SELECT is_current FROM keymigrate.inventory_reports WHERE id = $1 FOR UPDATE`, r.ID).Scan(&current)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !current) {
			return ErrInventoryReplaced
		}
		if err != nil {
			return err
		}
		return inventoryRecoverLocked(ctx, tx, r.ID)
	})
}

// InventoryReadFunc streams the records of one data file. The ledger calls it
// inside the transaction that claimed the file: an error, or a cancelled
// context, rolls the file's rows back and leaves it to be loaded again.
type InventoryReadFunc func(ctx context.Context, f InventoryFile) iter.Seq2[InventoryObject, error]

// InventoryLoadNextFile claims the next unloaded data file of report r,
// copies its records into inventory_objects (streaming: read is pulled one
// record at a time) and marks it loaded, in one transaction. It returns
// false once every file of the report is loaded (by this process or others);
// when only files other loaders hold are left, it waits for them, and takes
// over the file of a loader that died. A report a crash emptied is first
// marked unloaded (every file is loaded again). A report replaced meanwhile
// is ErrInventoryReplaced.
func (s *Store) InventoryLoadNextFile(ctx context.Context, r InventoryReport, read InventoryReadFunc) (InventoryFileLoad, bool, error) {
	for range 5 {
		res, ok, err := s.inventoryLoadOne(ctx, r, read, false)
		if err == nil && !ok {
			// Nothing to claim without waiting: wait for the files others
			// hold (a dead loader's is then ours).
			res, ok, err = s.inventoryLoadOne(ctx, r, read, true)
		}
		if errors.Is(err, errSentinelGone) {
			if err := s.inventoryRecover(ctx, r); err != nil {
				return InventoryFileLoad{}, false, fmt.Errorf("inventory report %d: reload after a crash: %w", r.ID, err)
			}
			continue
		}
		if err != nil || ok {
			return res, ok, err
		}
		done, err := s.inventoryFinish(ctx, r)
		if err != nil || done {
			return InventoryFileLoad{}, false, err
		}
		// A crash emptied the report between the last file and here: load
		// it again.
	}
	return InventoryFileLoad{}, false, fmt.Errorf("inventory report %d: its objects keep disappearing (is Postgres restarting?)", r.ID)
}

// inventoryLoadOne claims one file (waiting for locked ones if wait) and
// loads it; false if there is none.
func (s *Store) inventoryLoadOne(ctx context.Context, r InventoryReport, read InventoryReadFunc, wait bool) (InventoryFileLoad, bool, error) {
	var res InventoryFileLoad
	loaded := false
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := inventoryHoldCurrent(ctx, tx, r.ID); err != nil {
			return err
		}
		lock := `FOR UPDATE SKIP LOCKED`
		if wait {
			lock = `FOR UPDATE`
		}
		f := InventoryFile{}
		err := tx.QueryRow(ctx, `SELECT idx, key, size, md5 FROM keymigrate.inventory_files
 WHERE report_id = $1 AND loaded_at IS NULL ORDER BY idx LIMIT 1 `+lock, r.ID).Scan(&f.Index, &f.Key, &f.Size, &f.MD5)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("claim a data file: %w", err)
		}
		if hook, ok := inventoryBeforeCopy.Load(s); ok {
			hook.(func(InventoryFile))(f)
		}
		start := time.Now()
		n, err := copyInventoryFile(ctx, tx, f, read)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE keymigrate.inventory_files SET loaded_at = now(), rows = $3, loader = $4 WHERE report_id = $1 AND idx = $2`,
			r.ID, f.Index, n, loaderName()); err != nil {
			return fmt.Errorf("mark data file %s loaded: %w", f.Key, err)
		}
		res, loaded = InventoryFileLoad{File: f, Rows: n, Elapsed: time.Since(start)}, true
		return nil
	})
	if err != nil {
		if errors.Is(err, errSentinelGone) || errors.Is(err, ErrInventoryReplaced) {
			return res, false, err
		}
		return res, false, fmt.Errorf("inventory report %d: %w", r.ID, err)
	}
	return res, loaded, nil
}

// inventoryHoldCurrent checks that report id is current and intact. (What
// keeps a replacement out until the file is loaded is the file's row lock:
// the replacement deletes the replaced report's file rows before it empties
// the table.)
func inventoryHoldCurrent(ctx context.Context, tx pgx.Tx, id int64) error {
	var current, present bool
	err := tx.QueryRow(ctx, `SELECT is_current FROM keymigrate.inventory_reports WHERE id = $1`, id).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !current) {
		return ErrInventoryReplaced
	}
	if err != nil {
		return fmt.Errorf("lock the inventory report: %w", err)
	}
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keymigrate.inventory_loaded WHERE report_id = $1)`, id).Scan(&present); err != nil {
		return fmt.Errorf("check the inventory sentinel: %w", err)
	}
	if !present {
		return errSentinelGone
	}
	return nil
}

// copyInventoryFile COPYs the records of f into inventory_objects in tx.
func copyInventoryFile(ctx context.Context, tx pgx.Tx, f InventoryFile, read InventoryReadFunc) (int64, error) {
	next, stop := iter.Pull2(read(ctx, f))
	defer stop()
	src := &inventorySource{next: next}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{Schema, "inventory_objects"},
		[]string{"key", "size", "etag", "last_modified", "storage_class", "is_multipart", "encryption_status"}, src)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return 0, fmt.Errorf("copy data file %s: a key already loaded: the report lists it twice (%s): %w", f.Key, pe.Detail, err)
		}
		return 0, fmt.Errorf("copy data file %s: %w", f.Key, err)
	}
	return n, nil
}

// inventorySource feeds CopyFrom from a pulled iterator.
type inventorySource struct {
	next func() (InventoryObject, error, bool)
	cur  InventoryObject
	err  error
}

func (s *inventorySource) Next() bool {
	o, err, ok := s.next()
	if !ok {
		return false
	}
	if err != nil {
		s.err = err
		return false
	}
	s.cur = o
	return true
}

func (s *inventorySource) Values() ([]any, error) {
	o := s.cur
	etag := strings.Trim(o.ETag, `"`)
	switch {
	case o.Key == "":
		return nil, errors.New("a record with an empty key")
	case etag == "":
		return nil, fmt.Errorf("%s: no ETag", o.Key)
	case o.StorageClass == "":
		return nil, fmt.Errorf("%s: no storage class", o.Key)
	case o.Size < 0:
		return nil, fmt.Errorf("%s: size %d", o.Key, o.Size)
	}
	var lm, enc any
	if !o.LastModified.IsZero() {
		lm = o.LastModified
	}
	if o.EncryptionStatus != "" {
		enc = o.EncryptionStatus
	}
	return []any{o.Key, o.Size, etag, lm, o.StorageClass, o.Multipart, enc}, nil
}

func (s *inventorySource) Err() error { return s.err }

// inventoryFinish marks report r loaded once every file is; false if a crash
// emptied it meanwhile (its files are then unloaded again).
func (s *Store) inventoryFinish(ctx context.Context, r InventoryReport) (bool, error) {
	done := false
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var current, present bool
		var left int64
		// FOR UPDATE: not while a replacement or a recovery is half done.
		err := tx.QueryRow(ctx, `SELECT is_current FROM keymigrate.inventory_reports WHERE id = $1 FOR UPDATE`, r.ID).Scan(&current)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !current) {
			return ErrInventoryReplaced
		}
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keymigrate.inventory_loaded WHERE report_id = $1),
 (SELECT count(*) FROM keymigrate.inventory_files WHERE report_id = $1 AND loaded_at IS NULL)`, r.ID).Scan(&present, &left)
		if err != nil {
			return err
		}
		if !present {
			return inventoryRecoverLocked(ctx, tx, r.ID)
		}
		if left > 0 {
			return nil
		}
		done = true
		_, err = tx.Exec(ctx, `UPDATE keymigrate.inventory_reports SET loaded_at = coalesce(loaded_at, now()),
 rows = (SELECT coalesce(sum(rows), 0) FROM keymigrate.inventory_files WHERE report_id = $1) WHERE id = $1`, r.ID)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrInventoryReplaced) {
			return false, err
		}
		return false, fmt.Errorf("inventory report %d: finish: %w", r.ID, err)
	}
	return done, nil
}

// inventoryBeforeCopy holds, for a Store a test gives one, a function called
// between the claim of a file and its COPY (export_test.go): the moment a
// replacement must wait for.
var inventoryBeforeCopy sync.Map // *Store → func(InventoryFile)

// loaderName names this process in inventory_files.loader.
func loaderName() string {
	h, _ := os.Hostname()
	return h + ":" + strconv.Itoa(os.Getpid())
}

// inventoryRead runs fn on the objects of report r, which must be the
// current, completely loaded report. inventory_objects is locked (ACCESS
// SHARE) before the check, so a replacement or a recovery (TRUNCATE) waits
// for fn instead of emptying the table under it.
func (s *Store) inventoryRead(ctx context.Context, r InventoryReport, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE keymigrate.inventory_objects IN ACCESS SHARE MODE`); err != nil {
			return err
		}
		var current, loaded, present bool
		err := tx.QueryRow(ctx, `SELECT is_current, loaded_at IS NOT NULL, EXISTS (SELECT 1 FROM keymigrate.inventory_loaded WHERE report_id = $1)
 FROM keymigrate.inventory_reports WHERE id = $1`, r.ID).Scan(&current, &loaded, &present)
		switch {
		case errors.Is(err, pgx.ErrNoRows) || (err == nil && !current):
			return ErrInventoryReplaced
		case err != nil:
			return err
		case !present:
			return ErrInventoryEmptied
		case !loaded:
			return ErrInventoryNotLoaded
		}
		return fn(tx)
	})
}

const inventoryObjectColumns = `key, size, etag, last_modified, storage_class, is_multipart, coalesce(encryption_status, '')`

func scanInventoryObject(row pgx.CollectableRow) (InventoryObject, error) {
	var o InventoryObject
	var lm *time.Time
	err := row.Scan(&o.Key, &o.Size, &o.ETag, &lm, &o.StorageClass, &o.Multipart, &o.EncryptionStatus)
	o.ETag = `"` + o.ETag + `"`
	if lm != nil {
		o.LastModified = lm.UTC()
	}
	return o, err
}

// InventoryGetMany returns the objects of report r among keys (absent keys
// are not in the map): one index lookup per key, for verify and cleanup to
// call per page of keys. r must be the current, completely loaded report:
// ErrInventoryReplaced if another report was begun since (a pass must not
// mix two reports' dates), ErrInventoryEmptied after a crash,
// ErrInventoryNotLoaded while loading.
func (s *Store) InventoryGetMany(ctx context.Context, r InventoryReport, keys []string) (map[string]InventoryObject, error) {
	out := make(map[string]InventoryObject, len(keys))
	err := s.inventoryRead(ctx, r, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+inventoryObjectColumns+` FROM keymigrate.inventory_objects WHERE key = ANY($1::text[])`, keys)
		if err != nil {
			return err
		}
		objs, err := pgx.CollectRows(rows, scanInventoryObject)
		for _, o := range objs {
			out[o.Key] = o
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("look up %d keys in inventory report %d: %w", len(keys), r.ID, err)
	}
	return out, nil
}

// InventoryObjectPage returns up to limit objects of report r whose keys
// start with prefix and come after after (byte order, the order S3 lists
// in): a keyset page, read from the primary key's range for the prefix. The
// next page starts after the last key returned; fewer than limit means the
// end. Errors as InventoryGetMany.
func (s *Store) InventoryObjectPage(ctx context.Context, r InventoryReport, prefix, after string, limit int) ([]InventoryObject, error) {
	var out []InventoryObject
	err := s.inventoryRead(ctx, r, func(tx pgx.Tx) error {
		sql := `SELECT ` + inventoryObjectColumns + ` FROM keymigrate.inventory_objects WHERE key >= $1 AND key > $2`
		args := []any{prefix, after, limit}
		if end, ok := prefixEnd(prefix); ok {
			sql += ` AND key < $4`
			args = append(args, end)
		}
		rows, err := tx.Query(ctx, sql+` ORDER BY key LIMIT $3`, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanInventoryObject)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read inventory report %d under %q after %q: %w", r.ID, prefix, after, err)
	}
	return out, nil
}

// prefixEnd returns the least string greater than every string that starts
// with prefix, in byte order: prefix with its last character replaced by the
// next one (UTF-8's byte order is its code point order, and a valid string
// has no code point between the two). False when there is none: an empty
// prefix, one of U+10FFFF only, or one that is not UTF-8 (Postgres holds no
// such key).
func prefixEnd(prefix string) (string, bool) {
	if !utf8.ValidString(prefix) {
		return "", false
	}
	for prefix != "" {
		r, size := utf8.DecodeLastRuneInString(prefix)
		prefix = prefix[:len(prefix)-size]
		next := r + 1
		if next >= 0xD800 && next <= 0xDFFF {
			next = 0xE000
		}
		if next <= utf8.MaxRune {
			return prefix + string(next), true
		}
	}
	return "", false
}
