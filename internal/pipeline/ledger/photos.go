package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// PhotoListUsingJobs returns, for each of jobs, the photos rows (any status,
// archived included) with a key column that is a legacy key of that job:
// rows that reference the job's objects and, not being migrated, also derive
// its metadata and animations.
//
// Without an index on the job of each key column this is a scan of photos
// (three hash joins); docs/guarantees.md gives the expression indexes that turn
// it into lookups on a large table.
func (s *Store) PhotoListUsingJobs(ctx context.Context, jobs []string) (map[string][]Photo, error) {
	rows, err := s.pool.Query(ctx, `
WITH j AS (SELECT DISTINCT unnest($1::text[]) AS job)
SELECT `+photoColumns+`, j.job FROM photos JOIN j ON j.job = substring(original_key FROM '^uploaded/([A-Za-z0-9-]+)\.[^./]+$')
UNION
SELECT `+photoColumns+`, j.job FROM photos JOIN j ON j.job = substring(processed_key FROM '^restored/([A-Za-z0-9-]+)/')
UNION
SELECT `+photoColumns+`, j.job FROM photos JOIN j ON j.job = substring(thumbnail_key FROM '^thumbnails/([A-Za-z0-9-]+)\.jpg$')`, jobs)
	if err != nil {
		return nil, fmt.Errorf("find the rows using %d legacy jobs: %w", len(jobs), err)
	}
	defer rows.Close()
	out := map[string][]Photo{}
	for rows.Next() {
		var p Photo
		var job string
		if err := rows.Scan(&p.ID, &p.OwnerID, &p.Status, &p.Original, &p.Processed, &p.Thumbnail, &job); err != nil {
			return nil, fmt.Errorf("find the rows using legacy jobs: %w", err)
		}
		out[job] = append(out[job], p)
	}
	return out, rows.Err()
}

// PhotoLegacyKeysClaimed reports whether cleanup has claimed (recorded its intent
// to delete) or deleted any of keys. An application that inserts a row
// referencing existing legacy keys while the migration runs checks this after
// its insert commits and withdraws the row if it is true: cleanup reads the
// rows again after committing its intent, so one of the two always sees the
// other.
func (s *Store) PhotoLegacyKeysClaimed(ctx context.Context, keys []string) (bool, error) {
	var claimed bool
	err := s.pool.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM keymigrate.object_moves
                WHERE old_key = ANY($1) AND (delete_intent_at IS NOT NULL OR deleted_at IS NOT NULL))`, keys).Scan(&claimed)
	if err != nil {
		return false, fmt.Errorf("read cleanup's claims on %d legacy keys: %w", len(keys), err)
	}
	return claimed, nil
}

// DeriveNewKeys returns the keys the key layout gives a row with these old
// keys, owner and photo: a legacy key's user-scoped key, a user-scoped key
// itself, no key for none. ok is false when an old key parses as neither.
func DeriveNewKeys(old Keys, owner, photoID string) (Keys, bool) {
	derive := func(k *string) (*string, bool) {
		if k == nil {
			return nil, true
		}
		if keylayout.IsUserScoped(*k) {
			return k, true
		}
		l, err := keylayout.ParseLegacy(*k)
		if err != nil {
			return nil, false
		}
		n, err := l.UserScoped(owner, photoID)
		if err != nil {
			return nil, false
		}
		return &n, true
	}
	orig, ok1 := derive(&old.Original)
	proc, ok2 := derive(old.Processed)
	thumb, ok3 := derive(old.Thumbnail)
	if !ok1 || !ok2 || !ok3 {
		return Keys{}, false
	}
	return Keys{Original: *orig, Processed: proc, Thumbnail: thumb}, true
}

// NewKeysDerived reports whether newKeys are exactly what DeriveNewKeys gives
// for old, owner and photo: the ledger then stores only the old keys.
func NewKeysDerived(old, newKeys Keys, owner, photoID string) bool {
	d, ok := DeriveNewKeys(old, owner, photoID)
	eq := func(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	return ok && d.Original == newKeys.Original && eq(d.Processed, newKeys.Processed) && eq(d.Thumbnail, newKeys.Thumbnail)
}

// derivedNewKey is the key layout's new key for a legacy key ("" if none).
func derivedNewKey(oldKey, owner, photoID string) string {
	l, err := keylayout.ParseLegacy(oldKey)
	if err != nil {
		return ""
	}
	n, err := l.UserScoped(owner, photoID)
	if err != nil {
		return ""
	}
	return n
}

// ArchivedStatus is the photos.status value of a photo set aside for manual
// review (no owner). Archived rows are never moved.
const ArchivedStatus = "archived"

// ErrPhotoNotFound is returned when no photos row has the id.
var ErrPhotoNotFound = errors.New("photo not found")

// Keys are a photo row's key columns.
type Keys struct {
	Original  string
	Processed *string
	Thumbnail *string
}

// Photo is the part of an application photos row the migration reads.
type Photo struct {
	ID      string
	OwnerID *string
	Status  *string
	Keys
}

// Legacy reports whether any key column is outside users/.
func (p Photo) Legacy() bool {
	return isLegacy(&p.Original) || isLegacy(p.Processed) || isLegacy(p.Thumbnail)
}

func isLegacy(k *string) bool { return k != nil && !strings.HasPrefix(*k, "users/") }

const photoColumns = `id::text, owner_id::text, status::text, original_key, processed_key, thumbnail_key`

func scanPhoto(row pgx.Row) (Photo, error) {
	var p Photo
	err := row.Scan(&p.ID, &p.OwnerID, &p.Status, &p.Original, &p.Processed, &p.Thumbnail)
	return p, err
}

// PhotoGet reads one photos row.
func (s *Store) PhotoGet(ctx context.Context, id string) (Photo, error) {
	p, err := scanPhoto(s.pool.QueryRow(ctx, `SELECT `+photoColumns+` FROM photos WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Photo{}, fmt.Errorf("photo %s: %w", id, ErrPhotoNotFound)
	}
	if err != nil {
		return Photo{}, fmt.Errorf("load photo %s: %w", id, err)
	}
	return p, nil
}

// legacyKeys holds for rows with at least one key column outside users/.
const legacyKeys = `(original_key NOT LIKE 'users/%' OR processed_key NOT LIKE 'users/%' OR thumbnail_key NOT LIKE 'users/%')`

// legacyFilter selects rows that still reference a legacy key and are not
// archived.
const legacyFilter = `status IS DISTINCT FROM 'archived' AND ` + legacyKeys

// PhotoScanLegacy returns up to limit legacy photos with an id greater than after
// (all of them if after is empty), in id order: keyset pagination, so memory
// and query cost stay flat however large the table is.
func (s *Store) PhotoScanLegacy(ctx context.Context, after string, limit int) ([]Photo, error) {
	return s.scanPhotos(ctx, legacyFilter, after, limit)
}

// scanPhotos is one page of a keyset scan of the photos matching where. The
// first page has no lower bound, because "id > ”" does not type when id is a
// uuid. It orders by photos.id, the column: a bare "id" would name the
// id::text output column, which sorts every row past the cursor on each page
// (quadratic over a large table) and, for integer ids, in an order the cursor
// does not follow (rows skipped).
func (s *Store) scanPhotos(ctx context.Context, where, after string, limit int) ([]Photo, error) {
	var rows pgx.Rows
	var err error
	if after == "" {
		rows, err = s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE `+where+` ORDER BY photos.id LIMIT $1`, limit)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE id > $1 AND `+where+` ORDER BY photos.id LIMIT $2`, after, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("scan photos after %q: %w", after, err)
	}
	photos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Photo, error) { return scanPhoto(r) })
	if err != nil {
		return nil, fmt.Errorf("scan photos after %q: %w", after, err)
	}
	return photos, nil
}

// PhotoCountLegacy counts the photos that still reference a legacy key.
func (s *Store) PhotoCountLegacy(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM photos WHERE `+legacyFilter).Scan(&n); err != nil {
		return 0, fmt.Errorf("count legacy photos: %w", err)
	}
	return n, nil
}

// PhotoScanAll returns up to limit photos (archived included) with an id greater
// than after, in id order.
func (s *Store) PhotoScanAll(ctx context.Context, after string, limit int) ([]Photo, error) {
	return s.scanPhotos(ctx, "true", after, limit)
}

// ArchivedPhoto is an archived photos row, for the manual-review report.
type ArchivedPhoto struct {
	Photo
	CreatedAt  time.Time
	ArchivedAt *time.Time
}

// PhotoScanArchived returns up to limit archived photos without an owner, after the
// given id, in id order.
func (s *Store) PhotoScanArchived(ctx context.Context, after string, limit int) ([]ArchivedPhoto, error) {
	after_, args, err := s.afterID(ctx, "p", after)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `
SELECT p.id::text, p.owner_id::text, p.status::text, p.original_key, p.processed_key, p.thumbnail_key, p.created_at, m.archived_at
  FROM photos p LEFT JOIN keymigrate.photo_moves m ON m.photo_id = p.id::text
 WHERE p.status = 'archived' AND p.owner_id IS NULL`+after_+`
 ORDER BY p.id LIMIT `+fmt.Sprint(limit), args...)
	if err != nil {
		return nil, fmt.Errorf("scan archived photos: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ArchivedPhoto, error) {
		var a ArchivedPhoto
		err := r.Scan(&a.ID, &a.OwnerID, &a.Status, &a.Original, &a.Processed, &a.Thumbnail, &a.CreatedAt, &a.ArchivedAt)
		return a, err
	})
}

// PhotoEachLegacy calls fn for every photos row that still references a legacy
// key (archived rows included), a page at a time.
func (s *Store) PhotoEachLegacy(ctx context.Context, fn func(p Photo) error) error {
	after := ""
	for {
		photos, err := s.scanPhotos(ctx, legacyKeys, after, 1000)
		if err != nil {
			return fmt.Errorf("scan legacy rows: %w", err)
		}
		if len(photos) == 0 {
			return nil
		}
		for _, p := range photos {
			if err := fn(p); err != nil {
				return err
			}
		}
		after = photos[len(photos)-1].ID
	}
}

// PhotoGetMany reads the photos rows with the given ids; a missing id has no
// entry (the application deleted the photo).
//
// The ids are cast to the column's type so that the primary key answers
// (`id::text = ANY(...)` reads the whole table: 449 ms for 500 ids at 2·10^6
// rows, against 1.7 ms); they come from the ledger, which recorded them from
// photos.id, so each one casts.
func (s *Store) PhotoGetMany(ctx context.Context, ids []string) (map[string]Photo, error) {
	idType, err := s.PhotoIDType(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE id = ANY($1::text[]::`+idType+`[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("read %d photos: %w", len(ids), err)
	}
	photos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Photo, error) { return scanPhoto(r) })
	if err != nil {
		return nil, fmt.Errorf("read %d photos: %w", len(ids), err)
	}
	out := make(map[string]Photo, len(photos))
	for _, p := range photos {
		out[p.ID] = p
	}
	return out, nil
}

// Columns returns the row's non-null key columns.
func (p Photo) Columns() []string {
	out := []string{p.Original}
	for _, k := range []*string{p.Processed, p.Thumbnail} {
		if k != nil {
			out = append(out, *k)
		}
	}
	return out
}

// References reports whether one of the row's key columns is key.
func (p Photo) References(key string) bool {
	for _, k := range p.Columns() {
		if k == key {
			return true
		}
	}
	return false
}

// PhotoScanLegacyRows returns up to limit photos rows (archived included) that
// reference a legacy key in any column, after the given id, in id order.
func (s *Store) PhotoScanLegacyRows(ctx context.Context, after string, limit int) ([]Photo, error) {
	return s.scanPhotos(ctx, legacyKeys, after, limit)
}

// PhotoArchivedBefore returns which of ids are archived, ownerless rows the worker
// archived before cutoff (and not purged yet): rows a purge may treat as
// going with it.
func (s *Store) PhotoArchivedBefore(ctx context.Context, ids []string, cutoff time.Time) (map[string]bool, error) {
	idType, err := s.PhotoIDType(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `
SELECT m.photo_id FROM keymigrate.photo_moves m JOIN photos p ON p.id = m.photo_id::`+idType+`
 WHERE m.photo_id = ANY($1) AND m.state = 'archived' AND m.archived_at <= $2 AND p.status = 'archived' AND p.owner_id IS NULL`, ids, cutoff)
	if err != nil {
		return nil, fmt.Errorf("read archived photos: %w", err)
	}
	ok, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read archived photos: %w", err)
	}
	out := make(map[string]bool, len(ok))
	for _, id := range ok {
		out[id] = true
	}
	return out, nil
}

// afterID is the keyset condition "id after the given one" on the photos
// table aliased alias, with the id cast to the column's own type so the
// primary key answers it (an id::text comparison reads the whole table), and
// its argument; none when after is "".
func (s *Store) afterID(ctx context.Context, alias, after string) (string, []any, error) {
	if after == "" {
		return "", nil, nil
	}
	idType, err := s.PhotoIDType(ctx)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf(" AND %s.id > $1::text::%s", alias, idType), []any{after}, nil
}

// photoColumnType returns the SQL type of a column of the photos table
// (uuid, bigint, text…), so that ids passed as text are cast to it and the
// column's indexes stay usable.
func (s *Store) photoColumnType(ctx context.Context, column string) (string, error) {
	var typ string
	err := s.pool.QueryRow(ctx, `
SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
 WHERE a.attrelid = 'photos'::regclass AND a.attname = $1 AND NOT a.attisdropped`, column).Scan(&typ)
	if err != nil {
		return "", fmt.Errorf("read the type of photos.%s: %w", column, err)
	}
	return typ, nil
}

// PhotoIDType is the SQL type of photos.id (uuid, bigint…).
func (s *Store) PhotoIDType(ctx context.Context) (string, error) { return s.photoColumnType(ctx, "id") }

// PhotoOwnerIDType is the SQL type of photos.owner_id (uuid, bigint, text…).
func (s *Store) PhotoOwnerIDType(ctx context.Context) (string, error) {
	return s.photoColumnType(ctx, "owner_id")
}

// IDFitsType checks that an id that passed keylayout.ValidateID (a UUID or a
// positive decimal integer) can be stored in a column of SQL type typ: a UUID
// in a uuid or text column, an integer in an integer or text column.
func IDFitsType(id, typ string) error {
	isUUID := strings.Contains(id, "-")
	switch {
	case typ == "uuid" && !isUUID:
		return fmt.Errorf("%q is not a UUID, and the column is uuid", id)
	case isUUID && (typ == "bigint" || typ == "integer" || typ == "smallint" || strings.HasPrefix(typ, "numeric")):
		return fmt.Errorf("%q is a UUID, and the column is %s", id, typ)
	}
	return nil
}
