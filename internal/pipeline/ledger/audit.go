package ledger

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// Compaction folds the object moves of photos that are cleaned (every legacy
// object deleted) and past the rollback window into one audit row per photo
// and job: what the audit report and verify need (kind, keys, size, ETags,
// checksum, verification and the times), packed as deflated JSON (auditJSON),
// without the per-object indexes. A compacted photo can no longer be rolled
// back by keymigrate (rollback after cleanup needs the live records; the
// window is the operator's promise that nobody will ask).

// auditJSON is ObjectMove as stored: short names, times in microseconds
// since the epoch (Postgres' precision), the new key left out when the key
// layout derives it from the old key, the owner and the photo, and the ETag
// when it is the source's (a single-part copy keeps its ETag).
type auditJSON struct {
	Kind              string  `json:"k"`
	OldKey            string  `json:"o"`
	NewKey            *string `json:"n,omitempty"`
	Size              int64   `json:"s"`
	SourceETag        string  `json:"se,omitempty"`
	ETag              *string `json:"e,omitempty"`
	ChecksumAlgorithm string  `json:"ca,omitempty"`
	Checksum          string  `json:"c,omitempty"`
	// SourceChecksumAlgorithm is left out when it is ChecksumAlgorithm (as
	// object_moves stores it).
	SourceChecksumAlgorithm *string `json:"sca,omitempty"`
	VerifyMethod            string  `json:"v,omitempty"`
	NotCarried              string  `json:"nc,omitempty"`
	CopiedAt                *int64  `json:"ct,omitempty"`
	VerifiedAt              *int64  `json:"vt,omitempty"`
	CommittedAt             *int64  `json:"mt,omitempty"`
	// VerifiedIsCommitted: VerifiedAt is CommittedAt (the usual case).
	VerifiedIsCommitted bool   `json:"vm,omitempty"`
	DeletedAt           *int64 `json:"dt,omitempty"`
	SupersededAt        *int64 `json:"st,omitempty"`
}

func micros(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	m := t.UnixMicro()
	return &m
}

func fromMicros(m *int64) *time.Time {
	if m == nil {
		return nil
	}
	t := time.UnixMicro(*m) // local, as pgx reads a timestamptz
	return &t
}

func (a ObjectMove) pack(owner, photoID string) auditJSON {
	j := auditJSON{Kind: a.Kind, OldKey: a.OldKey, Size: a.Size, SourceETag: a.SourceETag,
		ChecksumAlgorithm: a.ChecksumAlgorithm, Checksum: a.Checksum, VerifyMethod: a.VerifyMethod, NotCarried: a.NotCarried,
		CopiedAt: micros(a.CopiedAt), VerifiedAt: micros(a.VerifiedAt), CommittedAt: micros(a.CommittedAt),
		DeletedAt: micros(a.DeletedAt), SupersededAt: micros(a.SupersededAt)}
	if a.NewKey != derivedNewKey(a.OldKey, owner, photoID) {
		j.NewKey = &a.NewKey
	}
	if a.ETag != a.SourceETag {
		j.ETag = &a.ETag
	}
	j.SourceChecksumAlgorithm = sourceChecksumAlgorithm(a)
	// The usual values, left out: verified by the checksum the copy carries,
	// verified in the transaction that committed.
	if a.ChecksumAlgorithm != "" && a.VerifyMethod == "checksum:"+a.ChecksumAlgorithm {
		j.VerifyMethod = "="
	}
	if j.VerifiedAt != nil && j.CommittedAt != nil && *j.VerifiedAt == *j.CommittedAt {
		j.VerifiedAt = nil
		j.VerifiedIsCommitted = true
	}
	return j
}

func (j auditJSON) unpack(owner, photoID string) ObjectMove {
	a := ObjectMove{Kind: j.Kind, OldKey: j.OldKey, Size: j.Size, SourceETag: j.SourceETag, ETag: j.SourceETag,
		ChecksumAlgorithm: j.ChecksumAlgorithm, Checksum: j.Checksum, VerifyMethod: j.VerifyMethod, NotCarried: j.NotCarried,
		CopiedAt: fromMicros(j.CopiedAt), VerifiedAt: fromMicros(j.VerifiedAt), CommittedAt: fromMicros(j.CommittedAt),
		DeletedAt: fromMicros(j.DeletedAt), SupersededAt: fromMicros(j.SupersededAt)}
	a.SourceChecksumAlgorithm = a.ChecksumAlgorithm
	if j.SourceChecksumAlgorithm != nil {
		a.SourceChecksumAlgorithm = *j.SourceChecksumAlgorithm
	}
	if j.NewKey != nil {
		a.NewKey = *j.NewKey
	} else {
		a.NewKey = derivedNewKey(j.OldKey, owner, photoID)
	}
	if j.ETag != nil {
		a.ETag = *j.ETag
	}
	if j.VerifyMethod == "=" {
		a.VerifyMethod = "checksum:" + j.ChecksumAlgorithm
	}
	if j.VerifiedIsCommitted {
		a.VerifiedAt = a.CommittedAt
	}
	return a
}

// packAudit encodes a photo's moves of one job as an audit row stores them:
// JSON, deflated (keys, ETags and checksums are hex and base64 text, and a
// photo's keys repeat its job: about half the size). The compressors are
// pooled: a new flate writer allocates about 800 KiB of tables, which per
// photo made compaction CPU-bound at scale (TestAuditPackingReusesItsCompressors).
func packAudit(objs []auditJSON) ([]byte, error) {
	raw, err := json.Marshal(objs)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	w := flateWriters.Get().(*flate.Writer)
	defer flateWriters.Put(w)
	w.Reset(&b)
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var flateWriters = sync.Pool{New: func() any {
	w, err := flate.NewWriter(io.Discard, flate.BestCompression)
	if err != nil {
		panic(err) // only for an invalid level
	}
	return w
}}

var flateReaders = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

func unpackAudit(b []byte) ([]auditJSON, error) {
	r := flateReaders.Get().(io.ReadCloser)
	defer flateReaders.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(b), nil); err != nil {
		return nil, fmt.Errorf("inflate an audit row: %w", err)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("inflate an audit row: %w", err)
	}
	var objs []auditJSON
	if err := json.Unmarshal(raw, &objs); err != nil {
		return nil, fmt.Errorf("decode an audit row: %w", err)
	}
	return objs, nil
}

// AuditCountCompactable counts the photos Compact would fold: cleaned before
// cutoff and not yet compacted; objects counts their object moves.
func (s *Store) AuditCountCompactable(ctx context.Context, cutoff time.Time) (photos, objects int64, err error) {
	err = s.pool.QueryRow(ctx, `
SELECT count(*), coalesce(sum((SELECT count(*) FROM keymigrate.object_moves o WHERE o.photo_id = m.photo_id)), 0)
  FROM keymigrate.photo_moves m
 WHERE m.state = 'cleaned' AND m.cleaned_at < $1 AND m.compacted_at IS NULL`, cutoff).Scan(&photos, &objects)
	if err != nil {
		return 0, 0, fmt.Errorf("count photos to compact: %w", err)
	}
	return photos, objects, nil
}

// AuditCompact folds the object moves of up to limit photos cleaned before cutoff,
// after the given photo id, into audit rows, in one transaction, and returns
// the last photo id it folded ("" when none was left) and the number of
// photos and object moves. A photo that is no longer cleaned when the
// transaction locks it (a rollback came first) is left alone.
func (s *Store) AuditCompact(ctx context.Context, cutoff time.Time, after string, limit int) (last string, photos, objects int64, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		c, err := compactLockPhotos(ctx, tx, cutoff, after, limit)
		if err != nil || len(c.ids) == 0 {
			return err
		}
		last = c.ids[len(c.ids)-1]
		n, err := c.readMoves(ctx, tx)
		objects += n
		if err != nil {
			return err
		}
		photos, err = c.write(ctx, tx)
		return err
	})
	if err != nil {
		return "", 0, 0, fmt.Errorf("compact the ledger after photo %q: %w", after, err)
	}
	return last, photos, objects, nil
}

// compactKey is the photo and job of one audit row.
type compactKey struct{ photo, job string }

// compaction is one AuditCompact batch as it is built inside the
// transaction: the photos locked, then their object moves packed by audit
// row.
type compaction struct {
	ids    []string          // the photos locked, in photo id order
	owners map[string]string // their owners ("" when ownerless)
	packed map[compactKey][]auditJSON
	order  []compactKey // the audit rows in the order the moves were read
	// held are the old key columns the audit rows hold (as the old key of
	// the original, restored and thumbnail moves), by photo: photo_moves
	// need not.
	held map[string]*[3]*string
}

// compactLockPhotos locks up to limit photos cleaned before cutoff and not
// compacted, after the given photo id: a photo a rollback took first is no
// longer cleaned and is not selected. A photo another transaction holds is
// skipped (SKIP LOCKED): concurrent compactions take disjoint batches
// (cleanup.Compact), and one a rollback holds is left for the next run.
func compactLockPhotos(ctx context.Context, tx pgx.Tx, cutoff time.Time, after string, limit int) (*compaction, error) {
	rows, err := tx.Query(ctx, `
SELECT photo_id, coalesce(owner_id, '') FROM keymigrate.photo_moves
 WHERE state = 'cleaned' AND cleaned_at < $1 AND compacted_at IS NULL AND photo_id > $2
 ORDER BY photo_id LIMIT $3 FOR UPDATE SKIP LOCKED`, cutoff, after, limit)
	if err != nil {
		return nil, err
	}
	c := &compaction{owners: map[string]string{}}
	for rows.Next() {
		var id, owner string
		if err := rows.Scan(&id, &owner); err != nil {
			rows.Close()
			return nil, err
		}
		c.ids = append(c.ids, id)
		c.owners[id] = owner
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// readMoves locks and reads the object moves of the locked photos, packing
// each into its audit row and noting the old keys of the committed moves,
// and returns how many it read.
func (c *compaction) readMoves(ctx context.Context, tx pgx.Tx) (objects int64, err error) {
	// Lock the moves in the order the worker's swap and cleanup take them.
	orows, err := tx.Query(ctx, `
SELECT photo_id, coalesce(job_id, ''), kind, old_key, new_key, size, coalesce(source_etag, ''), coalesce(etag, ''),
       coalesce(checksum_algorithm, ''), coalesce(checksum, ''), coalesce(source_checksum_algorithm, checksum_algorithm, ''),
       coalesce(verify_method, ''), coalesce(not_carried, ''),
       copied_at, verified_at, committed_at, deleted_at, superseded_at
  FROM keymigrate.object_moves WHERE photo_id = ANY($1) AND discarded_at IS NULL
 ORDER BY new_key FOR UPDATE`, c.ids)
	if err != nil {
		return 0, err
	}
	c.packed = map[compactKey][]auditJSON{}
	c.held = map[string]*[3]*string{}
	for _, id := range c.ids {
		c.held[id] = &[3]*string{}
	}
	for orows.Next() {
		var k compactKey
		var o ObjectMove
		if err := orows.Scan(&k.photo, &k.job, &o.Kind, &o.OldKey, &o.NewKey, &o.Size, &o.SourceETag, &o.ETag,
			&o.ChecksumAlgorithm, &o.Checksum, &o.SourceChecksumAlgorithm, &o.VerifyMethod, &o.NotCarried,
			&o.CopiedAt, &o.VerifiedAt, &o.CommittedAt, &o.DeletedAt, &o.SupersededAt); err != nil {
			orows.Close()
			return objects, err
		}
		if _, ok := c.packed[k]; !ok {
			c.order = append(c.order, k)
		}
		c.packed[k] = append(c.packed[k], o.pack(c.owners[k.photo], k.photo))
		if i := columnOfKind(o.Kind); i >= 0 && o.CommittedAt != nil {
			c.held[k.photo][i] = &o.OldKey
		}
		objects++
	}
	orows.Close()
	return objects, orows.Err()
}

// write inserts the audit rows, deletes the object moves they replace and
// marks the photos compacted, and returns how many photos it marked.
func (c *compaction) write(ctx context.Context, tx pgx.Tx) (photos int64, err error) {
	var aPhotos, aJobs []string
	var aObjects [][]byte
	var aMoves []int16
	for _, k := range c.order {
		b, err := packAudit(c.packed[k])
		if err != nil {
			return 0, err
		}
		aPhotos, aJobs, aObjects = append(aPhotos, k.photo), append(aJobs, k.job), append(aObjects, b)
		aMoves = append(aMoves, int16(len(c.packed[k])))
	}
	// A photo is compacted once (its row is locked and marked in this
	// transaction), so an audit row is never written twice.
	if _, err := tx.Exec(ctx, `
INSERT INTO keymigrate.object_audit (photo_id, job_id, moves, objects)
SELECT p, j, n, o FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bytea[]) AS t(p, j, n, o)`, aPhotos, aJobs, aMoves, aObjects); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM keymigrate.object_moves WHERE photo_id = ANY($1)`, c.ids); err != nil {
		return 0, err
	}
	// What only a live photo needs goes too: the last error of an attempt,
	// the worker that held it, and the old key columns the audit rows hold.
	var heldO, heldP, heldT []*string
	for _, id := range c.ids {
		h := c.held[id]
		heldO, heldP, heldT = append(heldO, h[0]), append(heldP, h[1]), append(heldT, h[2])
	}
	tag, err := tx.Exec(ctx, `
UPDATE keymigrate.photo_moves m SET compacted_at = now(), last_error = NULL, worker_id = NULL,
       old_original_key  = CASE WHEN m.old_original_key  = t.o THEN NULL ELSE m.old_original_key  END,
       old_processed_key = CASE WHEN m.old_processed_key = t.p THEN NULL ELSE m.old_processed_key END,
       old_thumbnail_key = CASE WHEN m.old_thumbnail_key = t.t THEN NULL ELSE m.old_thumbnail_key END
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(id, o, p, t)
 WHERE m.photo_id = t.id`, c.ids, heldO, heldP, heldT)
	return tag.RowsAffected(), err
}

// auditObjects returns the audit rows' object moves of photos, by photo.
func (s *Store) auditObjects(ctx context.Context, photoIDs []string) (map[string][]ObjectMove, error) {
	rows, err := s.pool.Query(ctx, `
SELECT a.photo_id, coalesce(m.owner_id, ''), a.objects
  FROM keymigrate.object_audit a LEFT JOIN keymigrate.photo_moves m ON m.photo_id = a.photo_id
 WHERE a.photo_id = ANY($1) ORDER BY a.photo_id, a.job_id`, photoIDs)
	if err != nil {
		return nil, fmt.Errorf("read the audit rows of %d photos: %w", len(photoIDs), err)
	}
	defer rows.Close()
	out := map[string][]ObjectMove{}
	for rows.Next() {
		var id, owner string
		var packed []byte
		if err := rows.Scan(&id, &owner, &packed); err != nil {
			return nil, fmt.Errorf("read the audit rows of %d photos: %w", len(photoIDs), err)
		}
		objs, err := unpackAudit(packed)
		if err != nil {
			return nil, fmt.Errorf("photo %s: %w", id, err)
		}
		for _, o := range objs {
			out[id] = append(out[id], o.unpack(owner, id))
		}
	}
	return out, rows.Err()
}

// AuditCountCompacted counts the compacted photos (of one photo, one run, or all
// of them: empty strings select everything).
func (s *Store) AuditCountCompacted(ctx context.Context, photoID, runID string) (int64, error) {
	// The filters are written into the statement only when given, not as
	// "($1 = '' OR photo_id = $1)": a generic plan (a worker's connection,
	// Options.GenericPlans) cannot see that $1 is empty and would read the
	// whole table for the one photo.
	q, args := `SELECT count(*) FROM keymigrate.photo_moves WHERE compacted_at IS NOT NULL`, []any{}
	if photoID != "" {
		args = append(args, photoID)
		q += fmt.Sprintf(" AND photo_id = $%d", len(args))
	}
	if runID != "" {
		args = append(args, runID)
		q += fmt.Sprintf(" AND run_id = $%d", len(args))
	}
	var n int64
	err := s.pool.QueryRow(ctx, q, args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count compacted photos: %w", err)
	}
	return n, nil
}

// auditDeletedKeys maps each of jobs to the legacy keys of that job that
// cleanup deleted, as the audit rows of compacted photos record them.
func (s *Store) auditDeletedKeys(ctx context.Context, jobs []string) (map[string][]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT job_id, objects FROM keymigrate.object_audit WHERE job_id = ANY($1)`, jobs)
	if err != nil {
		return nil, fmt.Errorf("read the audit rows of %d legacy jobs: %w", len(jobs), err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var job string
		var packed []byte
		if err := rows.Scan(&job, &packed); err != nil {
			return nil, fmt.Errorf("read the audit rows of legacy jobs: %w", err)
		}
		objs, err := unpackAudit(packed)
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", job, err)
		}
		for _, o := range objs {
			if o.DeletedAt != nil {
				out[job] = append(out[job], o.OldKey)
			}
		}
	}
	return out, rows.Err()
}

// columnOfKind is the index of the photos key column a move of kind comes
// from (original, processed, thumbnail), or -1 for derived objects.
func columnOfKind(kind string) int {
	switch keylayout.Kind(kind) {
	case keylayout.KindOriginal:
		return 0
	case keylayout.KindRestored:
		return 1
	case keylayout.KindThumbnail:
		return 2
	}
	return -1
}

// ReportPhoto is one photo of a run as the audit report shows it: its ledger
// row and every object the ledger recorded for it.
type ReportPhoto struct {
	PhotoID      string
	RunID        string
	State        State
	OwnerID      *string
	Attempts     int
	LastReason   *string
	LastError    *string
	Old          Keys // the row's keys before the swap or the archive (empty when never swapped)
	OldStatus    *string
	EnqueuedAt   *time.Time
	StartedAt    *time.Time
	SwappedAt    *time.Time
	ArchivedAt   *time.Time
	FailedAt     *time.Time
	RolledBackAt *time.Time
	CleanedAt    *time.Time
	Objects      []ObjectMove
}

// RunReportPage returns up to limit photos of run after the given photo id,
// in photo id order, each with its object moves: two statements per page, so
// a report of any size is written with one page in memory.
func (s *Store) RunReportPage(ctx context.Context, runID, after string, limit int) ([]ReportPhoto, error) {
	photos, err := s.reportPhotos(ctx, runID, after, limit)
	if err != nil || len(photos) == 0 {
		return nil, err
	}
	ids := make([]string, len(photos))
	index := make(map[string]int, len(photos))
	for i, p := range photos {
		ids[i] = p.PhotoID
		index[p.PhotoID] = i
	}
	if err := s.reportObjectMoves(ctx, runID, ids, photos, index); err != nil {
		return nil, err
	}
	// Compacted photos keep their moves in audit rows.
	audit, err := s.auditObjects(ctx, ids)
	if err != nil {
		return nil, err
	}
	for id, objs := range audit {
		addAuditToReport(&photos[index[id]], objs)
	}
	return photos, nil
}

// reportPhotos reads the photo_moves rows of one report page.
func (s *Store) reportPhotos(ctx context.Context, runID, after string, limit int) ([]ReportPhoto, error) {
	rows, err := s.pool.Query(ctx, `
SELECT photo_id, coalesce(run_id, ''), state, owner_id, attempts, last_reason, last_error,
       old_original_key, old_processed_key, old_thumbnail_key, old_status,
       enqueued_at, started_at, swapped_at, archived_at, failed_at, rolled_back_at, cleaned_at
  FROM keymigrate.photo_moves
 WHERE run_id = $1 AND photo_id > $2
 ORDER BY photo_id LIMIT $3`, runID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read report page of run %s: %w", runID, err)
	}
	photos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ReportPhoto, error) {
		var p ReportPhoto
		var oldOrig *string
		err := r.Scan(&p.PhotoID, &p.RunID, &p.State, &p.OwnerID, &p.Attempts, &p.LastReason, &p.LastError,
			&oldOrig, &p.Old.Processed, &p.Old.Thumbnail, &p.OldStatus,
			&p.EnqueuedAt, &p.StartedAt, &p.SwappedAt, &p.ArchivedAt, &p.FailedAt, &p.RolledBackAt, &p.CleanedAt)
		if oldOrig != nil {
			p.Old.Original = *oldOrig
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("read report page of run %s: %w", runID, err)
	}
	return photos, nil
}

// reportObjectMoves appends the live object moves of the page's photos ids
// to photos (index gives a photo's place in photos).
func (s *Store) reportObjectMoves(ctx context.Context, runID string, ids []string, photos []ReportPhoto, index map[string]int) error {
	orows, err := s.pool.Query(ctx, `
SELECT photo_id, kind, old_key, new_key, size, coalesce(source_etag, ''), coalesce(etag, ''),
       coalesce(checksum_algorithm, ''), coalesce(checksum, ''), coalesce(verify_method, ''),
       copied_at, verified_at, committed_at, deleted_at, new_deleted_at
  FROM keymigrate.object_moves WHERE photo_id = ANY($1)
 ORDER BY photo_id, new_key`, ids)
	if err != nil {
		return fmt.Errorf("read object moves of run %s: %w", runID, err)
	}
	defer orows.Close()
	for orows.Next() {
		var id string
		var o ObjectMove
		if err := orows.Scan(&id, &o.Kind, &o.OldKey, &o.NewKey, &o.Size, &o.SourceETag, &o.ETag,
			&o.ChecksumAlgorithm, &o.Checksum, &o.VerifyMethod, &o.CopiedAt, &o.VerifiedAt, &o.CommittedAt, &o.DeletedAt, &o.NewDeletedAt); err != nil {
			return fmt.Errorf("read object moves of run %s: %w", runID, err)
		}
		i := index[id]
		photos[i].Objects = append(photos[i].Objects, o)
	}
	if err := orows.Err(); err != nil {
		return fmt.Errorf("read object moves of run %s: %w", runID, err)
	}
	return nil
}

// addAuditToReport adds a compacted photo's moves, read from its audit rows,
// to p, and fills the old keys compaction cleared from the row (it leaves the
// old key columns the audit rows hold to them); the objects stay in new key
// order.
func addAuditToReport(p *ReportPhoto, objs []ObjectMove) {
	old := &p.Old
	for _, a := range objs {
		if a.CommittedAt == nil {
			continue
		}
		switch columnOfKind(a.Kind) {
		case 0:
			if old.Original == "" {
				old.Original = a.OldKey
			}
		case 1:
			if old.Processed == nil {
				old.Processed = &a.OldKey
			}
		case 2:
			if old.Thumbnail == nil {
				old.Thumbnail = &a.OldKey
			}
		}
	}
	for _, a := range objs {
		p.Objects = append(p.Objects, ObjectMove{Kind: a.Kind, OldKey: a.OldKey, NewKey: a.NewKey, Size: a.Size,
			SourceETag: a.SourceETag, ETag: a.ETag, ChecksumAlgorithm: a.ChecksumAlgorithm, Checksum: a.Checksum, VerifyMethod: a.VerifyMethod,
			CopiedAt: a.CopiedAt, VerifiedAt: a.VerifiedAt, CommittedAt: a.CommittedAt, DeletedAt: a.DeletedAt})
	}
	slices.SortFunc(p.Objects, func(a, b ObjectMove) int { return strings.Compare(a.NewKey, b.NewKey) })
}
