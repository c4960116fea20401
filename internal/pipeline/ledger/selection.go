package ledger

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The kinds of run.
const (
	// RunProducer is a producer's pass over the photos table (resumable).
	RunProducer = "producer"
	// RunAssign is one `migratectl archived assign` invocation.
	RunAssign = "assign"
)

// Selection is the subset of legacy photos a run enqueues, recorded on the run
// so that an auditor can tell what each stage of a staged rollout covered. The
// conditions combine with AND; the zero value selects every legacy photo.
type Selection struct {
	// Owners keeps photos whose owner_id is one of these.
	Owners []string `json:"owners,omitempty"`
	// PhotosFrom keeps the photos listed in a file (recorded by its hash, so a
	// resumed run must be given the same file).
	PhotosFrom *PhotoList `json:"photos_from,omitempty"`
	// Limit stops the run once it has enqueued this many photos (0: no limit).
	Limit int64 `json:"limit,omitempty"`
	// SamplePercent keeps the photos whose SampleBucket is below
	// SamplePercent×100: deterministic, so a 10% sample contains the 1% one.
	SamplePercent float64 `json:"sample_percent,omitempty"`
	// PhotoAssignOwner describes an archived-assign run: where its decisions came from.
	Assign *AssignSource `json:"archived_assign,omitempty"`
}

// PhotoList identifies a file of photo ids.
type PhotoList struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	IDs    int64  `json:"ids"`
}

// AssignSource is where an archived-assign run's decisions came from: one
// --photo/--owner pair, or a CSV file.
type AssignSource struct {
	Photo  string `json:"photo,omitempty"`
	Owner  string `json:"owner,omitempty"`
	Path   string `json:"path,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Lines  int64  `json:"lines,omitempty"`
}

// All reports whether s selects every legacy photo.
func (s *Selection) All() bool {
	return s == nil || (len(s.Owners) == 0 && s.PhotosFrom == nil && s.Limit == 0 && s.SamplePercent == 0 && s.Assign == nil)
}

// orNil is what the runs.selection column stores: NULL for every photo.
func (s *Selection) orNil() any {
	if s.All() {
		return nil
	}
	return s
}

// String describes the selection in one line.
func (s *Selection) String() string {
	if s.All() {
		return "every legacy photo"
	}
	var parts []string
	if len(s.Owners) > 0 {
		parts = append(parts, "owners "+strings.Join(s.Owners, ","))
	}
	if l := s.PhotosFrom; l != nil {
		parts = append(parts, fmt.Sprintf("%d ids from %s (sha256 %s)", l.IDs, l.Path, short(l.SHA256)))
	}
	if s.SamplePercent > 0 {
		parts = append(parts, fmt.Sprintf("sample %g%%", s.SamplePercent))
	}
	if s.Limit > 0 {
		parts = append(parts, fmt.Sprintf("limit %d", s.Limit))
	}
	if a := s.Assign; a != nil {
		if a.Path != "" {
			parts = append(parts, fmt.Sprintf("archived assign from %s (%d lines, sha256 %s)", a.Path, a.Lines, short(a.SHA256)))
		} else {
			parts = append(parts, fmt.Sprintf("archived assign of photo %s to owner %s", a.Photo, a.Owner))
		}
	}
	return strings.Join(parts, "; ")
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

// SameSelection reports whether a run recorded with a may be resumed by an
// invocation asking for b: the same owners, the same file contents (its path
// may differ), the same limit and sample.
func SameSelection(a, b *Selection) bool {
	if a.All() || b.All() {
		return a.All() == b.All()
	}
	if !slices.Equal(NormaliseOwners(a.Owners), NormaliseOwners(b.Owners)) || a.Limit != b.Limit || a.SamplePercent != b.SamplePercent {
		return false
	}
	if (a.PhotosFrom == nil) != (b.PhotosFrom == nil) {
		return false
	}
	return a.PhotosFrom == nil || (a.PhotosFrom.SHA256 == b.PhotosFrom.SHA256 && a.PhotosFrom.IDs == b.PhotosFrom.IDs)
}

// NormaliseOwners sorts and deduplicates owner ids.
func NormaliseOwners(owners []string) []string {
	o := slices.Clone(owners)
	slices.Sort(o)
	return slices.Compact(o)
}

// SelectionDiffersError refuses to resume a run with another selection.
type SelectionDiffersError struct {
	RunID    string
	Recorded *Selection
	Asked    *Selection
}

// Error names the run and both selections.
func (e *SelectionDiffersError) Error() string {
	return fmt.Sprintf("run %s is unfinished and selects %s, but this invocation selects %s",
		e.RunID, e.Recorded.String(), e.Asked.String())
}

// SampleBuckets is the number of buckets photos are hashed into by SampleBucket.
const SampleBuckets = 10000

// SampleBucket is the sample bucket of a photo id, in [0, SampleBuckets): the
// first four bytes of the MD5 of the id (as Postgres prints it: a UUID in lower
// case), big-endian, modulo 10,000. A sample of P percent keeps the photos
// whose bucket is below P×100, so every larger sample contains the smaller
// ones. sampleSQL computes the same in Postgres.
func SampleBucket(id string) int {
	sum := md5.Sum([]byte(id))
	return int(binary.BigEndian.Uint32(sum[:4]) % SampleBuckets)
}

// sampleSQL is SampleBucket in SQL, for a photos row.
const sampleSQL = `((('x' || substr(md5(id::text), 1, 8))::bit(32)::bigint) % 10000)`

// ErrSamplePercent is returned for a sample that is not a percentage from
// 0.01 to 100 with at most two decimals.
var ErrSamplePercent = errors.New("a sample is a percentage from 0.01 to 100 with at most two decimals")

// SampleThreshold converts a percentage into the bucket bound of SampleBucket,
// refusing values that are not a multiple of 0.01 in (0, 100]
// (ErrSamplePercent).
func SampleThreshold(percent float64) (int, error) {
	bp := percent * 100
	n := int(bp + 0.5)
	if percent <= 0 || percent > 100 || bp-float64(n) > 1e-6 || float64(n)-bp > 1e-6 {
		return 0, fmt.Errorf("sample of %g%%: %w", percent, ErrSamplePercent)
	}
	return n, nil
}

// Selector turns a Selection into SQL filters on the photos table. Build it
// once per run with NewSelector.
type Selector struct {
	sel       *Selection
	idType    string
	ownerType string
	threshold int
}

// NewSelector prepares sel's filters.
func (s *Store) NewSelector(ctx context.Context, sel *Selection) (*Selector, error) {
	sc := &Selector{sel: sel}
	var err error
	if sc.idType, err = s.photoColumnType(ctx, "id"); err != nil {
		return nil, err
	}
	if sc.ownerType, err = s.photoColumnType(ctx, "owner_id"); err != nil {
		return nil, err
	}
	if sel != nil && sel.SamplePercent > 0 {
		if sc.threshold, err = SampleThreshold(sel.SamplePercent); err != nil {
			return nil, err
		}
	}
	return sc, nil
}

// where is the filter of legacy, non-archived photos matching the selection's
// owners and sample; its arguments are appended to args.
func (sc *Selector) where(args []any) (string, []any) {
	conds := []string{legacyFilter}
	if sc.sel != nil && len(sc.sel.Owners) > 0 {
		args = append(args, sc.sel.Owners)
		conds = append(conds, fmt.Sprintf("owner_id = ANY($%d::text[]::%s[])", len(args), sc.ownerType))
	}
	if sc.threshold > 0 && sc.threshold < SampleBuckets {
		args = append(args, sc.threshold)
		conds = append(conds, fmt.Sprintf("%s < $%d", sampleSQL, len(args)))
	}
	return strings.Join(conds, " AND "), args
}

// Scan returns up to limit selected legacy photos with an id greater than
// after (from the start if after is empty), in id order.
func (sc *Selector) Scan(ctx context.Context, s *Store, after string, limit int) ([]Photo, error) {
	return sc.ScanRange(ctx, s, "", "", after, limit)
}

// ScanRange is Scan within a shard's range of ids: at least lower (if not
// empty), below upper (if not empty).
func (sc *Selector) ScanRange(ctx context.Context, s *Store, lower, upper, after string, limit int) ([]Photo, error) {
	args := []any{limit}
	bounds := ""
	bound := func(op, v string) {
		args = append(args, v)
		bounds += fmt.Sprintf("id %s $%d::text::%s AND ", op, len(args), sc.idType)
	}
	switch {
	case after != "":
		bound(">", after)
	case lower != "":
		bound(">=", lower)
	}
	if upper != "" {
		bound("<", upper)
	}
	where, args := sc.where(args)
	rows, err := s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE `+bounds+where+` ORDER BY photos.id LIMIT $1`, args...)
	if err != nil {
		return nil, fmt.Errorf("scan selected photos after %q: %w", after, err)
	}
	return collectPhotos(rows, after)
}

// Among returns the selected legacy photos among ids, in id order (ids with no
// row, rows already migrated or archived, and rows outside the selection's
// owners and sample are left out).
func (sc *Selector) Among(ctx context.Context, s *Store, ids []string) ([]Photo, error) {
	where, args := sc.where([]any{ids})
	rows, err := s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE id = ANY($1::text[]::`+sc.idType+`[]) AND `+where+` ORDER BY photos.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read %d listed photos: %w", len(ids), err)
	}
	return collectPhotos(rows, "")
}

// UnreachedQuery names the photos Unreached looks for: those run RunID
// recorded as enqueued, in [Lower, Upper) (either empty: unbounded), read
// Page ids a statement.
type UnreachedQuery struct {
	RunID        string
	Lower, Upper string
	Page         int
}

// Unreached calls fn with pages of the photos q.RunID recorded as enqueued, in
// [q.Lower, q.Upper) if given, that the selection no longer matches: the row was
// deleted, archived or rewritten to user-scoped keys, or no longer has a
// selected owner. A resumed scan never reaches them again, so a producer
// killed between recording them and sending their messages must send them
// when it resumes. Photos recorded earlier and already sent are among them
// too (a duplicate message is harmless: workers are idempotent).
func (sc *Selector) Unreached(ctx context.Context, s *Store, q UnreachedQuery, fn func(ids []string) error) error {
	runID, lower, upper, page := q.RunID, q.Lower, q.Upper, q.Page
	after := ""
	for {
		args := []any{runID, after, page}
		bounds := ""
		if lower != "" {
			args = append(args, lower)
			bounds += fmt.Sprintf(" AND m.photo_id::%s >= $%d::text::%s", sc.idType, len(args), sc.idType)
		}
		if upper != "" {
			args = append(args, upper)
			bounds += fmt.Sprintf(" AND m.photo_id::%s < $%d::text::%s", sc.idType, len(args), sc.idType)
		}
		where, args := sc.where(args)
		rows, err := s.pool.Query(ctx, `
SELECT m.photo_id FROM keymigrate.photo_moves m
 WHERE m.run_id = $1 AND m.photo_id > $2 AND m.state = 'enqueued'`+bounds+`
   AND NOT EXISTS (SELECT 1 FROM photos WHERE photos.id = m.photo_id::`+sc.idType+` AND `+where+`)
 ORDER BY m.photo_id LIMIT $3`, args...)
		if err != nil {
			return fmt.Errorf("find photos of run %s the scan no longer reaches: %w", runID, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("find photos of run %s the scan no longer reaches: %w", runID, err)
		}
		if len(ids) == 0 {
			return nil
		}
		if err := fn(ids); err != nil {
			return err
		}
		if len(ids) < page {
			return nil
		}
		after = ids[len(ids)-1]
	}
}

// IDType is the SQL type of photos.id.
func (sc *Selector) IDType() string { return sc.idType }

func collectPhotos(rows pgx.Rows, after string) ([]Photo, error) {
	photos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Photo, error) { return scanPhoto(r) })
	if err != nil {
		return nil, fmt.Errorf("scan photos after %q: %w", after, err)
	}
	return photos, nil
}
