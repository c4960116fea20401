package ledger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// A pass scoped to one run (verify --run R --shard i/n) splits the run's
// photos by a hash of their id: shard i takes the photos whose
// keymigrate.job_hash(photo_id) falls in the i-th of n equal slices of the
// 32-bit hash space (CleanupShardRange). No bounds need fixing in the ledger:
// the slices are disjoint and cover every photo whatever the run holds and
// however it changes, and balanced whatever its ids look like (a run of a few
// owners, or of the first N photos, would crowd one range of new keys or of
// ids). Each shard reads the run's entries of photo_moves_run_idx in photo id
// order and keeps its own: reading index entries costs microseconds, a
// photo's checks tens of milliseconds.

// RunPhotoIDsShard is RunPhotoIDs for shard of shards of the run.
func (s *Store) RunPhotoIDsShard(ctx context.Context, runID string, shard, shards int, after string, limit int) ([]string, error) {
	lo, hi, err := CleanupShardRange(shard, shards)
	if err != nil {
		return nil, err
	}
	var ids []string
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// The page must be read by walking an index in photo id order and
		// stopping after limit of the shard's photos, never by fetching and
		// sorting the rest of the run. Left to itself the planner does the
		// latter: job_hash(photo_id) has no statistics, so it estimates the
		// shard's share of the run at its default selectivity for a range
		// (0.5 %) and a page's rows as fewer than the limit, which the whole
		// remainder sorted (top-N) seems cheap to find. Every page then read
		// all of the run after the cursor (a sequential scan of photo_moves
		// at 2 × 10^4 photos): O(n) rows a page, O(n^2) a pass (docs/scale.md,
		// per-phase database work). Without sorting, only ordered walks are
		// left (photo_moves_run_idx, or the primary key where the run is most
		// of the ledger), chosen on run_id's own statistics. As
		// CleanupListKeys.
		if _, err := tx.Exec(ctx, `SET LOCAL enable_sort = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT photo_id FROM keymigrate.photo_moves
 WHERE run_id = $1 AND photo_id > $2
   AND keymigrate.job_hash(photo_id) >= $3::bigint AND keymigrate.job_hash(photo_id) < $4::bigint
 ORDER BY photo_id LIMIT $5`, runID, after, lo, hi, limit)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read photos of run %s, shard %d/%d: %w", runID, shard, shards, err)
	}
	return ids, nil
}

// RunScanRowsShard is RunScanRows for shard of shards of the run: the photos
// rows of up to limit of its photos after the given id, and the last id read
// (the next page starts after it, even when its row was deleted).
func (s *Store) RunScanRowsShard(ctx context.Context, runID string, shard, shards int, after string, limit int) ([]Photo, string, error) {
	ids, err := s.RunPhotoIDsShard(ctx, runID, shard, shards, after, limit)
	if err != nil || len(ids) == 0 {
		return nil, "", err
	}
	rows, err := s.PhotoGetMany(ctx, ids)
	if err != nil {
		return nil, "", fmt.Errorf("read photos rows of run %s: %w", runID, err)
	}
	photos := make([]Photo, 0, len(rows))
	for _, id := range ids {
		if p, ok := rows[id]; ok {
			photos = append(photos, p)
		}
	}
	return photos, ids[len(ids)-1], nil
}

// ObjectMoveListCommittedOfPhotos returns the committed moves of photos, in
// new key order.
func (s *Store) ObjectMoveListCommittedOfPhotos(ctx context.Context, photoIDs []string) ([]ObjectMove, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+objectMoveColumns("")+` FROM keymigrate.object_moves
 WHERE photo_id = ANY($1) AND committed_at IS NOT NULL ORDER BY new_key`, photoIDs)
	if err != nil {
		return nil, fmt.Errorf("read committed moves of %d photos: %w", len(photoIDs), err)
	}
	objs, err := pgx.CollectRows(rows, scanObjectMove)
	if err != nil {
		return nil, fmt.Errorf("read committed moves of %d photos: %w", len(photoIDs), err)
	}
	return objs, nil
}
