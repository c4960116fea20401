package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PurgeListCandidates returns up to limit archived, ownerless photos, after the
// given id, that the worker archived before cutoff and that are not purged.
func (s *Store) PurgeListCandidates(ctx context.Context, cutoff time.Time, after string, limit int) ([]ArchivedPhoto, error) {
	// The photos the ledger archived, in the ledger's photo id order (a
	// keyset on its partial index of archived photos: a few percent of the
	// ledger), each joined to its row by the row's primary key.
	idType, err := s.PhotoIDType(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `
SELECT p.id::text, p.owner_id::text, p.status::text, p.original_key, p.processed_key, p.thumbnail_key, p.created_at, m.archived_at
  FROM keymigrate.photo_moves m JOIN photos p ON p.id = m.photo_id::`+idType+`
 WHERE m.state = 'archived' AND m.archived_at <= $1 AND m.photo_id > $2 AND p.status = 'archived' AND p.owner_id IS NULL
 ORDER BY m.photo_id LIMIT $3`, cutoff, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read purge candidates: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ArchivedPhoto, error) {
		var a ArchivedPhoto
		err := r.Scan(&a.ID, &a.OwnerID, &a.Status, &a.Original, &a.Processed, &a.Thumbnail, &a.CreatedAt, &a.ArchivedAt)
		return a, err
	})
}

// PurgeBegin records, before the delete, the legacy objects a purge deletes
// for photo and their ETags.
func (s *Store) PurgeBegin(ctx context.Context, photoID string, etags map[string]string, sizes map[string]int64) error {
	var keys, tags []string
	var sz []int64
	for k, e := range etags {
		keys, tags, sz = append(keys, k), append(tags, e), append(sz, sizes[k])
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO keymigrate.purges (old_key, photo_id, etag, size)
SELECT k, $1, e, z FROM unnest($2::text[], $3::text[], $4::bigint[]) AS t(k, e, z)
ON CONFLICT (old_key) DO UPDATE SET etag = EXCLUDED.etag, intent_at = now() WHERE keymigrate.purges.deleted_at IS NULL`, photoID, keys, tags, sz)
	if err != nil {
		return fmt.Errorf("record the purge of %d objects of photo %s: %w", len(keys), photoID, err)
	}
	return nil
}

// PurgeFinish records deleted legacy objects, and the photo as purged when
// complete is true.
func (s *Store) PurgeFinish(ctx context.Context, photoID string, deleted []string, complete bool) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE keymigrate.purges SET deleted_at = now() WHERE old_key = ANY($1) AND deleted_at IS NULL`, deleted); err != nil {
			return fmt.Errorf("record purged objects: %w", err)
		}
		if !complete {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE keymigrate.photo_moves SET state = 'purged', purged_at = now(), updated_at = now() WHERE photo_id = $1 AND state = 'archived'`, photoID); err != nil {
			return fmt.Errorf("record photo %s purged: %w", photoID, err)
		}
		return nil
	})
}

// PurgeListDone returns which of ids a purge completed.
func (s *Store) PurgeListDone(ctx context.Context, ids []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT photo_id FROM keymigrate.photo_moves WHERE photo_id = ANY($1) AND state = 'purged'`, ids)
	if err != nil {
		return nil, fmt.Errorf("read purged photos: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read purged photos: %w", err)
	}
	out := map[string]bool{}
	for _, id := range got {
		out[id] = true
	}
	return out, nil
}
