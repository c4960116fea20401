package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

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
	rows, err := s.pool.Query(ctx, `
SELECT p.id::text, p.owner_id::text, p.status::text, p.original_key, p.processed_key, p.thumbnail_key, p.created_at, m.archived_at
  FROM photos p LEFT JOIN keymigrate.photo_moves m ON m.photo_id = p.id::text
 WHERE p.status = 'archived' AND p.owner_id IS NULL AND ($1 = '' OR p.id::text > $1)
 ORDER BY p.id::text LIMIT $2`, after, limit)
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
func (s *Store) PhotoGetMany(ctx context.Context, ids []string) (map[string]Photo, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE id::text = ANY($1::text[])`, ids)
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
