package ledger

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// CleanupShardRange is the half-open range [lo, hi) of keymigrate.job_hash
// values that shard i of n covers: n equal slices of the 32-bit hash space,
// disjoint, and together the whole of it. cleanup shards by the job's hash
// (migration 00009): every object of a job falls in one shard, and the shards
// are balanced whatever the job ids look like.
func CleanupShardRange(shard, shards int) (lo, hi int64, err error) {
	if err := checkShard(shard, shards); err != nil {
		return 0, 0, err
	}
	const span = int64(1) << 32
	lo = -(span / 2) + span*int64(shard)/int64(shards)
	hi = -(span / 2) + span*int64(shard+1)/int64(shards)
	return lo, hi, nil
}

// CleanupListKeys returns up to limit legacy keys of shard i of n, after the
// cursor, that the ledger records as moved (a committed copy, not superseded)
// and not yet deleted: cleanup's candidates, in (job hash, key) order. The
// cursor is opaque: "" for the start, then the next value returned.
func (s *Store) CleanupListKeys(ctx context.Context, shard, shards int, after string, limit int) (keys []string, next string, err error) {
	lo, hi, err := CleanupShardRange(shard, shards)
	if err != nil {
		return nil, "", err
	}
	ah, ak := lo-1, ""
	if after != "" {
		h, k, ok := strings.Cut(after, " ")
		if ah, err = strconv.ParseInt(h, 10, 64); !ok || err != nil {
			return nil, "", fmt.Errorf("read cleanup candidates: cursor %q is not a cleanup cursor", after)
		}
		ak = k
	}
	var h int64
	var k string
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		keys = keys[:0]
		// The page must be read by walking object_moves_cleanup_shard_idx in
		// order and stopping after limit keys, never by fetching and sorting
		// the rest of the shard. Left to itself the planner does the latter:
		// it ignores the expression statistics of a partial index, so it has
		// none for job_hash(job_id) and estimates the shard's remaining
		// candidates at its default selectivities (about 0.2 % of the table),
		// a set it thinks cheap to sort whole. Every page then
		// read and sorted (past work_mem, on disk) all of the shard after the
		// cursor: O(n) rows a page, O(n^2) a pass (docs/scale.md, cleanup's
		// database reads). Without sorting, the index order is the only plan.
		if _, err := tx.Exec(ctx, `SET LOCAL enable_sort = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
SELECT DISTINCT keymigrate.job_hash(job_id), old_key FROM keymigrate.object_moves
 WHERE committed_at IS NOT NULL AND deleted_at IS NULL AND superseded_at IS NULL
   AND keymigrate.job_hash(job_id) >= $1::bigint AND keymigrate.job_hash(job_id) < $2::bigint
   AND (keymigrate.job_hash(job_id), old_key) > ($3::integer, $4::text)
 ORDER BY 1, 2 LIMIT $5`, lo, hi, clampInt32(ah), ak, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := rows.Scan(&h, &k); err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, "", fmt.Errorf("read cleanup candidates of shard %d/%d: %w", shard, shards, err)
	}
	if len(keys) == 0 {
		return nil, after, nil
	}
	return keys, strconv.FormatInt(h, 10) + " " + k, nil
}

// clampInt32 keeps a cursor's hash inside integer's range (lo-1 of the first
// shard is below it; nothing hashes there, so the clamp changes nothing).
func clampInt32(v int64) int64 {
	return max(v, math.MinInt32)
}

// JobPhoto is a photo the ledger knows to come from a legacy job.
type JobPhoto struct {
	PhotoID string
	JobID   string
	State   State
}

// Claim is a legacy object cleanup is about to delete: its ETag, and the
// photos whose moves of it cleanup relied on.
type Claim struct {
	OldKey string
	ETag   string
	Photos []string
}

// CleanupClaim records cleanup's intent to delete the claimed legacy objects,
// in one transaction that first locks the rows of the photos that moved them
// (then their ledger rows, the order the worker's swap and rollback take them
// in) and checks them once more: a claim whose photo's row references a legacy
// key again, or whose photo is no longer migrated, cleaned or deleted in the
// ledger, is not made. A rollback that swaps a row back therefore either
// commits before the claim (and cleanup keeps the objects) or after it (and
// sees the intent: PhotoMoveRollBack refuses). It returns the keys claimed.
func (s *Store) CleanupClaim(ctx context.Context, claims []Claim) ([]string, error) {
	idType, err := s.PhotoIDType(ctx)
	if err != nil {
		return nil, err
	}
	var claimed []string
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		claimed = claimed[:0]
		idSet := map[string]bool{}
		for _, c := range claims {
			for _, id := range c.Photos {
				idSet[id] = true
			}
		}
		ids := make([]string, 0, len(idSet))
		for id := range idSet {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		// Cast to the column's type, so the primary key answers (see PhotoGetMany).
		rows, err := tx.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE id = ANY($1::text[]::`+idType+`[]) ORDER BY id FOR SHARE`, ids)
		if err != nil {
			return fmt.Errorf("lock photos: %w", err)
		}
		photos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Photo, error) { return scanPhoto(r) })
		if err != nil {
			return fmt.Errorf("lock photos: %w", err)
		}
		legacyRow := map[string]bool{}
		for _, p := range photos {
			legacyRow[p.ID] = p.Legacy()
		}
		states := map[string]State{}
		srows, err := tx.Query(ctx, `SELECT photo_id, state FROM keymigrate.photo_moves WHERE photo_id = ANY($1) ORDER BY photo_id FOR UPDATE`, ids)
		if err != nil {
			return fmt.Errorf("lock ledger rows: %w", err)
		}
		for srows.Next() {
			var id, st string
			if err := srows.Scan(&id, &st); err != nil {
				srows.Close()
				return err
			}
			states[id] = State(st)
		}
		srows.Close()
		if err := srows.Err(); err != nil {
			return err
		}
		var keys, tags []string
	claim:
		for _, c := range claims {
			for _, id := range c.Photos {
				switch st := states[id]; {
				case legacyRow[id]:
					continue claim
				case !st.Moved() && st != StateDeleted:
					continue claim
				}
			}
			keys, tags = append(keys, c.OldKey), append(tags, c.ETag)
		}
		if len(keys) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `
UPDATE keymigrate.object_moves o SET delete_intent_at = now(), delete_etag = t.etag
  FROM unnest($1::text[], $2::text[]) AS t(key, etag)
 WHERE o.job_id = ANY($3) AND o.old_key = t.key AND o.deleted_at IS NULL`, keys, tags, jobsOf(keys)); err != nil {
			return fmt.Errorf("record the intent to delete %d legacy objects: %w", len(keys), err)
		}
		claimed = keys
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim legacy objects for deletion: %w", err)
	}
	return claimed, nil
}

// CleanupClearIntent withdraws the intent for legacy objects that were not
// deleted after all.
func (s *Store) CleanupClearIntent(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves SET delete_intent_at = NULL, delete_etag = NULL WHERE job_id = ANY($2) AND old_key = ANY($1) AND deleted_at IS NULL`, keys, jobsOf(keys)); err != nil {
		return fmt.Errorf("withdraw the intent to delete %d legacy objects: %w", len(keys), err)
	}
	return nil
}

// CleanupListPending returns the legacy keys (with the ETag) of shard i of n
// that cleanup intended to delete without recording that it did: a pass that
// stopped in between. Only the shard's own: another shard's intent may be a
// delete in flight.
func (s *Store) CleanupListPending(ctx context.Context, shard, shards int) (map[string]string, error) {
	lo, hi, err := CleanupShardRange(shard, shards)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT old_key, coalesce(delete_etag, '') FROM keymigrate.object_moves
 WHERE delete_intent_at IS NOT NULL AND deleted_at IS NULL
   AND keymigrate.job_hash(job_id) >= $1::bigint AND keymigrate.job_hash(job_id) < $2::bigint`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read pending deletes: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, e string
		if err := rows.Scan(&k, &e); err != nil {
			return nil, fmt.Errorf("read pending deletes: %w", err)
		}
		out[k] = e
	}
	return out, rows.Err()
}

// CleanupMarkDeleted records that cleanup deleted these legacy objects (every move
// from them), and marks photos whose moved legacy objects are all gone as
// cleaned. Rows are locked photo_moves first, then object_moves, the order
// the worker's swap takes them in.
func (s *Store) CleanupMarkDeleted(ctx context.Context, oldKeys []string) error {
	if len(oldKeys) == 0 {
		return nil
	}
	jobs := jobsOf(oldKeys)
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM keymigrate.photo_moves WHERE photo_id IN
 (SELECT photo_id FROM keymigrate.object_moves WHERE job_id = ANY($2) AND old_key = ANY($1)) ORDER BY photo_id FOR UPDATE`, oldKeys, jobs); err != nil {
			return fmt.Errorf("lock photos: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE keymigrate.object_moves SET deleted_at = now() WHERE job_id = ANY($2) AND old_key = ANY($1) AND deleted_at IS NULL`, oldKeys, jobs); err != nil {
			return fmt.Errorf("record deletions: %w", err)
		}
		_, err := tx.Exec(ctx, `
UPDATE keymigrate.photo_moves p SET state = 'cleaned', cleaned_at = now(), updated_at = now()
 WHERE p.state = 'migrated'
   AND p.photo_id IN (SELECT photo_id FROM keymigrate.object_moves WHERE job_id = ANY($2) AND old_key = ANY($1))
   AND NOT EXISTS (SELECT 1 FROM keymigrate.object_moves o WHERE o.photo_id = p.photo_id
                    AND o.committed_at IS NOT NULL AND o.superseded_at IS NULL AND o.deleted_at IS NULL)`, oldKeys, jobs)
		if err != nil {
			return fmt.Errorf("mark photos cleaned: %w", err)
		}
		return nil
	})
}
