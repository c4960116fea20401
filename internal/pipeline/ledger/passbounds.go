package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PassBoundsFix returns the key ranges of a pass split into shards. The first
// shard to ask computes them (compute samples the tables) and records them;
// every later shard, and every rerun, reads the recorded ones, so the ranges
// stay disjoint and complete whatever the tables did in between. Two shards
// asking at once may both compute; the first insert wins and both return it.
func (s *Store) PassBoundsFix(ctx context.Context, pass Pass, scope string, shards int, compute func(context.Context) (any, error)) (json.RawMessage, error) {
	get := func() (json.RawMessage, error) {
		var b json.RawMessage
		err := s.pool.QueryRow(ctx, `SELECT bounds FROM keymigrate.pass_bounds WHERE pass = $1 AND scope = $2 AND shards = $3`, pass, scope, shards).Scan(&b)
		return b, err
	}
	b, err := get()
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("read the ranges of %s pass %q of %d shards: %w", pass, scope, shards, err)
	}
	v, err := compute(ctx)
	if err != nil {
		return nil, fmt.Errorf("compute the ranges of %s pass %q of %d shards: %w", pass, scope, shards, err)
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode the ranges of %s pass %q of %d shards: %w", pass, scope, shards, err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO keymigrate.pass_bounds (pass, scope, shards, bounds) VALUES ($1, $2, $3, $4)
 ON CONFLICT (pass, scope, shards) DO NOTHING`, pass, scope, shards, enc); err != nil {
		return nil, fmt.Errorf("record the ranges of %s pass %q of %d shards: %w", pass, scope, shards, err)
	}
	if b, err = get(); err != nil {
		return nil, fmt.Errorf("read the ranges of %s pass %q of %d shards: %w", pass, scope, shards, err)
	}
	return b, nil
}

// ObjectMoveShardBounds splits the committed object moves into count ranges
// of new_key holding about as many moves each, from a block sample (as
// PhotoShardBounds does for photos). It returns the count-1 inner bounds in
// order ("" repeated on an empty table: every range but the last is empty).
func (s *Store) ObjectMoveShardBounds(ctx context.Context, count int) ([]string, error) {
	if count < 2 {
		return nil, nil
	}
	var rows float64
	if err := s.pool.QueryRow(ctx, `SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'keymigrate.object_moves'::regclass`).Scan(&rows); err != nil {
		return nil, fmt.Errorf("shard the object moves: %w", err)
	}
	fractions := make([]float64, count-1)
	for i := range fractions {
		fractions[i] = float64(i+1) / float64(count)
	}
	sample := "keymigrate.object_moves"
	if rows > 2*shardSample {
		sample = fmt.Sprintf("keymigrate.object_moves TABLESAMPLE SYSTEM (%g)", 100*shardSample/rows)
	}
	var bounds []*string
	err := s.pool.QueryRow(ctx, `SELECT percentile_disc($1::float8[]) WITHIN GROUP (ORDER BY new_key) FROM `+sample, fractions).Scan(&bounds)
	if err != nil {
		return nil, fmt.Errorf("shard the object moves: %w", err)
	}
	out := make([]string, 0, len(fractions))
	for _, b := range bounds {
		if b == nil {
			out = append(out, "")
			continue
		}
		out = append(out, *b)
	}
	for len(out) < len(fractions) {
		out = append(out, "")
	}
	return out, nil
}

// ObjectMoveListCommittedRange returns up to limit committed moves with a new
// key after after (or from lower, inclusive, when after is empty) and before
// upper (empty: no end), in new key order: one shard's walk of the primary key.
func (s *Store) ObjectMoveListCommittedRange(ctx context.Context, lower, after, upper string, limit int) ([]ObjectMove, error) {
	cond, args := "new_key >= $1", []any{lower}
	if after != "" {
		cond, args = "new_key > $1", []any{after}
	}
	if upper != "" {
		cond += " AND new_key < $3"
	}
	args = append(args, limit)
	if upper != "" {
		args = append(args, upper)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+objectMoveColumns("")+` FROM keymigrate.object_moves
 WHERE committed_at IS NOT NULL AND `+cond+` ORDER BY new_key LIMIT $2`, args...)
	if err != nil {
		return nil, fmt.Errorf("read moved objects after %q: %w", after, err)
	}
	objs, err := pgx.CollectRows(rows, scanObjectMove)
	if err != nil {
		return nil, fmt.Errorf("read moved objects after %q: %w", after, err)
	}
	return objs, nil
}

// ObjectMoveCommittedNewKeys returns which of keys are the new keys of
// committed moves keymigrate's copy still stands for (not superseded by the
// application's write): verify checks those once, from the move, and not
// again from the row that points at them.
func (s *Store) ObjectMoveCommittedNewKeys(ctx context.Context, keys []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT new_key FROM keymigrate.object_moves
 WHERE new_key = ANY($1) AND committed_at IS NOT NULL AND superseded_at IS NULL`, keys)
	if err != nil {
		return nil, fmt.Errorf("look up %d new keys: %w", len(keys), err)
	}
	ks, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up %d new keys: %w", len(keys), err)
	}
	out := make(map[string]bool, len(ks))
	for _, k := range ks {
		out[k] = true
	}
	return out, nil
}

// PhotoScanShard returns up to limit photos rows (archived included) of the
// id range [lower, upper) after the id after ("" for the range's start), in
// id order; empty bounds are open. The bounds come from PhotoShardBounds.
func (s *Store) PhotoScanShard(ctx context.Context, lower, after, upper string, limit int) ([]Photo, error) {
	var conds []string
	var args []any
	add := func(cond, v string) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	switch {
	case after != "":
		add("id > $%d", after)
	case lower != "":
		add("id >= $%d", lower)
	}
	if upper != "" {
		add("id < $%d", upper)
	}
	where := "true"
	for i, c := range conds {
		if i == 0 {
			where = c
		} else {
			where += " AND " + c
		}
	}
	args = append(args, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+photoColumns+` FROM photos WHERE `+where+fmt.Sprintf(` ORDER BY photos.id LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("scan photos [%q, %q) after %q: %w", lower, upper, after, err)
	}
	photos, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Photo, error) { return scanPhoto(r) })
	if err != nil {
		return nil, fmt.Errorf("scan photos [%q, %q) after %q: %w", lower, upper, after, err)
	}
	return photos, nil
}
