package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A sharded producer run splits the photos table into Count disjoint ranges
// of its primary key, one per producer process (`producer --shard i/n`). The
// ranges are fixed when the first shard joins the run, from a sample of
// photos.id (so they hold about as many rows each whatever the id type or
// its distribution: UUIDs of any version, integers), and recorded in the
// ledger: every shard of the run scans its own range, keeps its own
// checkpoint, and resumes from it. Rows inserted later fall into exactly one
// range. The run is finished when every shard is.

// Shard is one range of a sharded run.
type Shard struct {
	RunID string
	Index int
	Count int
	// Lower (inclusive) and Upper (exclusive) bound the range, as photos.id
	// prints them; empty means unbounded.
	Lower, Upper string
	Checkpoint   string
	Counts       RunCounts
	FinishedAt   *time.Time
}

// ErrNoPhotos is PhotoShardBounds' answer on an empty photos table.
var ErrNoPhotos = errors.New("the photos table has no rows")

// shardSample is about how many ids PhotoShardBounds samples.
const shardSample = 100000

// PhotoShardBounds splits photos.id into count ranges holding about as many rows
// each, from a block sample of the table (TABLESAMPLE SYSTEM: cheap on a
// billion rows). It returns the count-1 inner bounds in order; a bound may
// repeat on a table with fewer rows than shards (that range is empty).
func (s *Store) PhotoShardBounds(ctx context.Context, count int) ([]string, error) {
	if count < 2 {
		return nil, nil
	}
	var rows float64
	if err := s.pool.QueryRow(ctx, `SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'photos'::regclass`).Scan(&rows); err != nil {
		return nil, fmt.Errorf("shard the photos table: %w", err)
	}
	fractions := make([]float64, count-1)
	for i := range fractions {
		fractions[i] = float64(i+1) / float64(count)
	}
	sample := "photos"
	if rows > 2*shardSample {
		sample = fmt.Sprintf("photos TABLESAMPLE SYSTEM (%g)", 100*shardSample/rows)
	}
	var bounds []*string
	err := s.pool.QueryRow(ctx, `SELECT (percentile_disc($1::float8[]) WITHIN GROUP (ORDER BY id))::text[] FROM `+sample, fractions).Scan(&bounds)
	if err != nil {
		return nil, fmt.Errorf("shard the photos table: %w", err)
	}
	out := make([]string, 0, len(bounds))
	for _, b := range bounds {
		if b == nil {
			return nil, fmt.Errorf("shard the photos table: %w", ErrNoPhotos)
		}
		out = append(out, *b)
	}
	return out, nil
}

// ShardRange returns the bounds of shard index of count given the inner
// bounds from PhotoShardBounds.
func ShardRange(bounds []string, index int) (lower, upper string) {
	if index > 0 {
		lower = bounds[index-1]
	}
	if index < len(bounds) {
		upper = bounds[index]
	}
	return lower, upper
}

// ShardCountError refuses to join a run with another number of shards (or a
// run that was started without shards).
type ShardCountError struct {
	RunID         string
	Recorded, Got int
}

// Error says how the run is split and how the invocation would split it.
func (e *ShardCountError) Error() string {
	switch {
	case e.Recorded == 0:
		return fmt.Sprintf("run %s was started without shards and has made progress: it cannot be split any more", e.RunID)
	case e.Got == 0:
		return fmt.Sprintf("run %s is split into %d shards: each producer of it takes one shard", e.RunID, e.Recorded)
	default:
		return fmt.Sprintf("run %s is split into %d shards, not %d", e.RunID, e.Recorded, e.Got)
	}
}

// RunShardCount returns how many shards a run is split into (0: not sharded).
func (s *Store) RunShardCount(ctx context.Context, runID string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT shards FROM keymigrate.runs WHERE run_id = $1`, runID).Scan(&n); err != nil {
		return 0, fmt.Errorf("read the shards of run %s: %w", runID, err)
	}
	return n, nil
}

// RunShardJoin returns shard index of count of run, splitting the run into count
// shards first if no shard joined it yet (a run that made progress without
// shards is refused). Shards joining at once are serialised on the run's row.
func (s *Store) RunShardJoin(ctx context.Context, runID string, index, count int) (Shard, error) {
	if count < 1 || index < 0 || index >= count {
		return Shard{}, fmt.Errorf("shard %d/%d: give i/n with 0 <= i < n", index, count)
	}
	var sh Shard
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var shards int
		var progress bool
		err := tx.QueryRow(ctx, `SELECT shards, checkpoint IS NOT NULL OR found > 0 FROM keymigrate.runs WHERE run_id = $1 FOR UPDATE`, runID).Scan(&shards, &progress)
		if err != nil {
			return err
		}
		switch {
		case shards == 0 && progress:
			return &ShardCountError{RunID: runID, Recorded: 0, Got: count}
		case shards == 0:
			bounds, err := s.PhotoShardBounds(ctx, count)
			if err != nil {
				return err
			}
			for i := range count {
				lo, up := ShardRange(bounds, i)
				if _, err := tx.Exec(ctx, `INSERT INTO keymigrate.run_shards (run_id, shard, lower, upper) VALUES ($1, $2, nullif($3, ''), nullif($4, ''))`, runID, i, lo, up); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `UPDATE keymigrate.runs SET shards = $2, updated_at = now() WHERE run_id = $1`, runID, count); err != nil {
				return err
			}
		case shards != count:
			return &ShardCountError{RunID: runID, Recorded: shards, Got: count}
		}
		sh = Shard{RunID: runID, Index: index, Count: count}
		return tx.QueryRow(ctx, `SELECT coalesce(lower, ''), coalesce(upper, ''), coalesce(checkpoint, ''), found, enqueued, skipped, ownerless, finished_at
  FROM keymigrate.run_shards WHERE run_id = $1 AND shard = $2`, runID, index).
			Scan(&sh.Lower, &sh.Upper, &sh.Checkpoint, &sh.Counts.Found, &sh.Counts.Enqueued, &sh.Counts.Skipped, &sh.Counts.Ownerless, &sh.FinishedAt)
	})
	if err != nil {
		var sce *ShardCountError
		if errors.As(err, &sce) {
			return Shard{}, err
		}
		return Shard{}, fmt.Errorf("join shard %d/%d of run %s: %w", index, count, runID, err)
	}
	return sh, nil
}

// RunShardAdvance records that every photo of the shard's range up to lastID was
// handled, and adds to the shard's and the run's counts.
func (s *Store) RunShardAdvance(ctx context.Context, runID string, index int, lastID string, add RunCounts) error {
	_, err := s.pool.Exec(ctx, `
WITH sh AS (
  UPDATE keymigrate.run_shards SET checkpoint = $3, found = found + $4, enqueued = enqueued + $5, skipped = skipped + $6,
         ownerless = ownerless + $7, updated_at = now()
   WHERE run_id = $1 AND shard = $2)
UPDATE keymigrate.runs SET found = found + $4, enqueued = enqueued + $5, skipped = skipped + $6, ownerless = ownerless + $7, updated_at = now()
 WHERE run_id = $1`, runID, index, lastID, add.Found, add.Enqueued, add.Skipped, add.Ownerless)
	if err != nil {
		return fmt.Errorf("advance checkpoint of shard %d of run %s to %s: %w", index, runID, lastID, err)
	}
	return nil
}

// RunShardFinish marks a shard complete, and the run when it was its last open
// shard. It reports whether the run is finished.
func (s *Store) RunShardFinish(ctx context.Context, runID string, index int) (bool, error) {
	var finished bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// The run's row first: two last shards finishing at once must not
		// both see the other one open.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM keymigrate.runs WHERE run_id = $1 FOR UPDATE`, runID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE keymigrate.run_shards SET finished_at = coalesce(finished_at, now()), updated_at = now() WHERE run_id = $1 AND shard = $2`, runID, index); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
UPDATE keymigrate.runs SET finished_at = now(), updated_at = now()
 WHERE run_id = $1 AND finished_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM keymigrate.run_shards WHERE run_id = $1 AND finished_at IS NULL)`, runID)
		finished = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("finish shard %d of run %s: %w", index, runID, err)
	}
	return finished, nil
}
