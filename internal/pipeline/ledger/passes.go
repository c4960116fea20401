package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A pass is a long operator command that walks the ledger or the bucket in
// key order and can be split across machines: verify and cleanup. Each shard
// of a pass keeps a cursor in keymigrate.pass_cursors, so a pass killed at any
// point continues where it stopped when run again with the same arguments,
// and a finished shard is not redone. Its tally (counts and a bounded set of
// examples, JSON the pass defines) travels with the cursor, so the verdict of
// a pass is the union of its shards' tallies.

// Pass names a kind of pass.
type Pass string

// The passes that keep cursors.
const (
	PassVerify  Pass = "verify"
	PassCleanup Pass = "cleanup"
)

// PassCursor is one shard's place in a pass.
type PassCursor struct {
	Pass Pass
	// Scope is what the pass covers: it and the shard count identify the
	// pass, so a rerun with other arguments starts a pass of its own.
	Scope  string
	Shard  int
	Shards int
	// Cursor is the last key the shard finished ("" before the first page).
	Cursor string
	// Tally is the pass's own running account, as JSON.
	Tally      json.RawMessage
	StartedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt *time.Time
	// Holder, when set, is the process holding the shard's lease
	// (PassLeaseTake): PassCursorAdvance and PassCursorFinish then move the
	// cursor only while it still holds it, and return ErrLeaseLost when
	// another process took the shard over (it would count pages twice).
	Holder string
	// Lease is the shard's lease as the row was read (for reports: who runs
	// the shard, and until when unless it renews). It is not Holder: a
	// cursor read is not a claim.
	Lease PassLeaseState
}

// PassLeaseState is a shard's lease as its row was read.
type PassLeaseState struct {
	// Holder is the process holding it ("" when none does); Until when its
	// lease lapses unless renewed; ReadAt the database's time of the read
	// (Postgres' clock decides, not the reader's).
	Holder string     `json:"holder,omitempty"`
	Until  *time.Time `json:"lease_until,omitempty"`
	ReadAt time.Time  `json:"read_at"`
}

// Held reports whether a process holds the lease and it has not lapsed.
func (l PassLeaseState) Held() bool {
	return l.Holder != "" && l.Until != nil && l.Until.After(l.ReadAt)
}

// String says, for a person, who runs the shard and when its lease lapses.
func (l PassLeaseState) String() string {
	switch {
	case l.Holder == "" || l.Until == nil:
		return "no process holds it (stopped; the next run continues it)"
	case l.Held():
		return fmt.Sprintf("held by %s, lease lapses at %s (in %s) unless renewed",
			l.Holder, l.Until.UTC().Format(time.RFC3339), l.Until.Sub(l.ReadAt).Round(time.Second))
	default:
		return fmt.Sprintf("held by %s, lease lapsed at %s (%s ago: it died or is cut off; the next run takes the shard over)",
			l.Holder, l.Until.UTC().Format(time.RFC3339), l.ReadAt.Sub(*l.Until).Round(time.Second))
	}
}

// Done reports whether the shard finished.
func (c PassCursor) Done() bool { return c.FinishedAt != nil }

// ShardError is a shard that is not one of n: 0 <= shard < n is required.
type ShardError struct{ Shard, Shards int }

func (e *ShardError) Error() string {
	return fmt.Sprintf("shard %d of %d: a shard is i of n with 0 <= i < n", e.Shard, e.Shards)
}

func checkShard(shard, shards int) error {
	if shards < 1 || shard < 0 || shard >= shards {
		return &ShardError{Shard: shard, Shards: shards}
	}
	return nil
}

const passCursorColumns = `pass, scope, shard, shards, coalesce(cursor, ''), tally, started_at, updated_at, finished_at,
 coalesce(holder, ''), lease_until, now()`

func scanPassCursor(r pgx.CollectableRow) (PassCursor, error) {
	var c PassCursor
	err := r.Scan(&c.Pass, &c.Scope, &c.Shard, &c.Shards, &c.Cursor, &c.Tally, &c.StartedAt, &c.UpdatedAt, &c.FinishedAt,
		&c.Lease.Holder, &c.Lease.Until, &c.Lease.ReadAt)
	return c, err
}

// PassCursorJoin returns the shard's cursor, creating it (at the start, with
// an empty tally) the first time the shard runs.
func (s *Store) PassCursorJoin(ctx context.Context, pass Pass, scope string, shard, shards int) (PassCursor, error) {
	if err := checkShard(shard, shards); err != nil {
		return PassCursor{}, err
	}
	rows, err := s.pool.Query(ctx, `
WITH ins AS (INSERT INTO keymigrate.pass_cursors (pass, scope, shard, shards) VALUES ($1, $2, $3, $4)
             ON CONFLICT (pass, scope, shards, shard) DO NOTHING RETURNING `+passCursorColumns+`)
SELECT * FROM ins
UNION ALL
SELECT `+passCursorColumns+` FROM keymigrate.pass_cursors WHERE pass = $1 AND scope = $2 AND shards = $4 AND shard = $3`,
		pass, scope, shard, shards)
	if err != nil {
		return PassCursor{}, fmt.Errorf("join %s pass %q shard %d/%d: %w", pass, scope, shard, shards, err)
	}
	cs, err := pgx.CollectRows(rows, scanPassCursor)
	if err != nil || len(cs) == 0 {
		return PassCursor{}, fmt.Errorf("join %s pass %q shard %d/%d: %w", pass, scope, shard, shards, errors.Join(err, errors.New("no cursor row")))
	}
	return cs[0], nil
}

// PassCursorAdvance records that the shard finished everything up to and
// including cursor, with its tally so far. The caller advances only after
// the work of the page is durable (its own ledger writes committed), so a
// kill between the two redoes one page, never skips one.
func (s *Store) PassCursorAdvance(ctx context.Context, c PassCursor, cursor string, tally any) error {
	b, err := json.Marshal(tally)
	if err != nil {
		return fmt.Errorf("advance %s pass %q shard %d/%d: encode tally: %w", c.Pass, c.Scope, c.Shard, c.Shards, err)
	}
	tag, err := s.pool.Exec(ctx, `
UPDATE keymigrate.pass_cursors SET cursor = $5, tally = $6, updated_at = now()
 WHERE pass = $1 AND scope = $2 AND shard = $3 AND shards = $4 AND finished_at IS NULL AND ($7 = '' OR holder = $7)`,
		c.Pass, c.Scope, c.Shard, c.Shards, cursor, b, c.Holder)
	if err != nil {
		return fmt.Errorf("advance %s pass %q shard %d/%d to %q: %w", c.Pass, c.Scope, c.Shard, c.Shards, cursor, err)
	}
	if c.Holder != "" && tag.RowsAffected() == 0 {
		return fmt.Errorf("advance %s pass %q shard %d/%d to %q as %s: %w", c.Pass, c.Scope, c.Shard, c.Shards, cursor, c.Holder, ErrLeaseLost)
	}
	return nil
}

// PassCursorFinish marks the shard finished with its final tally.
func (s *Store) PassCursorFinish(ctx context.Context, c PassCursor, tally any) error {
	b, err := json.Marshal(tally)
	if err != nil {
		return fmt.Errorf("finish %s pass %q shard %d/%d: encode tally: %w", c.Pass, c.Scope, c.Shard, c.Shards, err)
	}
	tag, err := s.pool.Exec(ctx, `
UPDATE keymigrate.pass_cursors SET tally = $5, updated_at = now(), finished_at = now()
 WHERE pass = $1 AND scope = $2 AND shard = $3 AND shards = $4 AND finished_at IS NULL AND ($6 = '' OR holder = $6)`,
		c.Pass, c.Scope, c.Shard, c.Shards, b, c.Holder)
	if err != nil {
		return fmt.Errorf("finish %s pass %q shard %d/%d: %w", c.Pass, c.Scope, c.Shard, c.Shards, err)
	}
	if c.Holder != "" && tag.RowsAffected() == 0 {
		return fmt.Errorf("finish %s pass %q shard %d/%d as %s: %w", c.Pass, c.Scope, c.Shard, c.Shards, c.Holder, ErrLeaseLost)
	}
	return nil
}

// PassCursorList returns every shard of a pass that has run, in shard
// order: the pass is complete when all shards of 0..shards-1 are listed and
// done.
func (s *Store) PassCursorList(ctx context.Context, pass Pass, scope string, shards int) ([]PassCursor, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+passCursorColumns+` FROM keymigrate.pass_cursors
 WHERE pass = $1 AND scope = $2 AND shards = $3 ORDER BY shard`, pass, scope, shards)
	if err != nil {
		return nil, fmt.Errorf("list %s pass %q of %d shards: %w", pass, scope, shards, err)
	}
	cs, err := pgx.CollectRows(rows, scanPassCursor)
	if err != nil {
		return nil, fmt.Errorf("list %s pass %q of %d shards: %w", pass, scope, shards, err)
	}
	return cs, nil
}

// PassCursorListAll returns the cursors of every pass of a kind, newest
// first (for status and `verify --report` to find the latest pass).
func (s *Store) PassCursorListAll(ctx context.Context, pass Pass) ([]PassCursor, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+passCursorColumns+` FROM keymigrate.pass_cursors
 WHERE pass = $1 ORDER BY started_at DESC, scope, shards, shard`, pass)
	if err != nil {
		return nil, fmt.Errorf("list %s passes: %w", pass, err)
	}
	cs, err := pgx.CollectRows(rows, scanPassCursor)
	if err != nil {
		return nil, fmt.Errorf("list %s passes: %w", pass, err)
	}
	return cs, nil
}

// PassCursorReset forgets every shard of a pass and its key ranges, so its
// next run starts over (and samples the tables again).
func (s *Store) PassCursorReset(ctx context.Context, pass Pass, scope string, shards int) error {
	if _, err := s.pool.Exec(ctx, `
WITH b AS (DELETE FROM keymigrate.pass_bounds WHERE pass = $1 AND scope = $2 AND shards = $3)
DELETE FROM keymigrate.pass_cursors WHERE pass = $1 AND scope = $2 AND shards = $3`, pass, scope, shards); err != nil {
		return fmt.Errorf("reset %s pass %q of %d shards: %w", pass, scope, shards, err)
	}
	return nil
}

// PassCursorRestart starts a finished shard over: its cursor back to the
// start, its tally emptied. A shard not finished is left as it is (it
// continues where it stopped). It returns the shard's cursor as it is now.
func (s *Store) PassCursorRestart(ctx context.Context, c PassCursor) (PassCursor, error) {
	if _, err := s.pool.Exec(ctx, `
UPDATE keymigrate.pass_cursors SET cursor = NULL, tally = '{}', started_at = now(), updated_at = now(), finished_at = NULL
 WHERE pass = $1 AND scope = $2 AND shard = $3 AND shards = $4 AND finished_at IS NOT NULL`,
		c.Pass, c.Scope, c.Shard, c.Shards); err != nil {
		return PassCursor{}, fmt.Errorf("restart %s pass %q shard %d/%d: %w", c.Pass, c.Scope, c.Shard, c.Shards, err)
	}
	return s.PassCursorJoin(ctx, c.Pass, c.Scope, c.Shard, c.Shards)
}
