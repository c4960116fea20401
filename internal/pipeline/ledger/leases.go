package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A shard of a pass is run by one process at a time: the process holds the
// shard's lease (migration 00011), renews it while it runs, and releases it
// at the end. Expiry is Postgres' clock, so the machines' clocks need not
// agree. The lease is on the shard's row of keymigrate.pass_cursors: the
// shard of the same pass (pass, scope, n, i), nothing wider.

// LeaseHeldError refuses a shard another process holds.
type LeaseHeldError struct {
	Pass          Pass
	Scope         string
	Shard, Shards int
	// Holder is the process holding the shard; Until when its lease lapses
	// unless it renews it; Now the database's time when it was read.
	Holder     string
	Until, Now time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("%s shard %d/%d of pass %q is held by %s until %s (in %s, unless it renews): another process runs this shard. "+
		"If it is running, leave it be (run the other shards); if it died, run this again after %s: the shard then continues from its cursor",
		e.Pass, e.Shard, e.Shards, e.Scope, e.Holder, e.Until.UTC().Format(time.RFC3339), e.Until.Sub(e.Now).Round(time.Second),
		e.Until.UTC().Format(time.RFC3339))
}

// ErrLeaseLost is a renewal (or a cursor update) of a lease the process no
// longer holds: it lapsed and another process took the shard over.
var ErrLeaseLost = errors.New("the shard's lease lapsed and another process took the shard over")

// PassLeaseTake takes the lease of c's shard for holder, for ttl: when no
// process holds it, when holder holds it already (a restart of the same
// process id), or when its holder's lease lapsed (the holder died, or lost
// its database long enough). It returns the previous holder of a lapsed
// lease it took over ("" otherwise), and a *LeaseHeldError while another
// holder's lease holds. The shard's row must exist (PassCursorJoin).
func (s *Store) PassLeaseTake(ctx context.Context, c PassCursor, holder string, ttl time.Duration) (previous string, err error) {
	var prev *string
	var prevUntil, until, now *time.Time
	var took bool
	err = s.pool.QueryRow(ctx, `
WITH old AS (
    SELECT holder, lease_until FROM keymigrate.pass_cursors
     WHERE pass = $1 AND scope = $2 AND shard = $3 AND shards = $4 FOR UPDATE),
took AS (
    UPDATE keymigrate.pass_cursors c SET holder = $5, lease_until = now() + make_interval(secs => $6)
      FROM old
     WHERE c.pass = $1 AND c.scope = $2 AND c.shard = $3 AND c.shards = $4
       AND (old.holder IS NULL OR old.holder = $5 OR coalesce(old.lease_until, '-infinity') <= now())
    RETURNING c.lease_until)
SELECT old.holder, old.lease_until, took.lease_until, took.lease_until IS NOT NULL, now()
  FROM old LEFT JOIN took ON true`, c.Pass, c.Scope, c.Shard, c.Shards, holder, ttl.Seconds()).Scan(&prev, &prevUntil, &until, &took, &now)
	if err != nil {
		return "", fmt.Errorf("take the lease of %s shard %d/%d of pass %q: %w", c.Pass, c.Shard, c.Shards, c.Scope, err)
	}
	if !took {
		return "", &LeaseHeldError{Pass: c.Pass, Scope: c.Scope, Shard: c.Shard, Shards: c.Shards, Holder: *prev, Until: *prevUntil, Now: *now}
	}
	if prev != nil && *prev != holder {
		return *prev, nil
	}
	return "", nil
}

// PassLeaseRenew extends holder's lease of c's shard to ttl from now. It
// returns ErrLeaseLost when holder no longer holds it.
func (s *Store) PassLeaseRenew(ctx context.Context, c PassCursor, holder string, ttl time.Duration) error {
	tag, err := s.pool.Exec(ctx, `
UPDATE keymigrate.pass_cursors SET lease_until = now() + make_interval(secs => $6)
 WHERE pass = $1 AND scope = $2 AND shard = $3 AND shards = $4 AND holder = $5`, c.Pass, c.Scope, c.Shard, c.Shards, holder, ttl.Seconds())
	if err != nil {
		return fmt.Errorf("renew the lease of %s shard %d/%d of pass %q: %w", c.Pass, c.Shard, c.Shards, c.Scope, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s shard %d/%d of pass %q, held by %s: %w", c.Pass, c.Shard, c.Shards, c.Scope, holder, ErrLeaseLost)
	}
	return nil
}

// PassLeaseRelease gives up holder's lease of c's shard (nothing if another
// process holds it now).
func (s *Store) PassLeaseRelease(ctx context.Context, c PassCursor, holder string) error {
	if _, err := s.pool.Exec(ctx, `
UPDATE keymigrate.pass_cursors SET holder = NULL, lease_until = NULL
 WHERE pass = $1 AND scope = $2 AND shard = $3 AND shards = $4 AND holder = $5`, c.Pass, c.Scope, c.Shard, c.Shards, holder); err != nil {
		return fmt.Errorf("release the lease of %s shard %d/%d of pass %q: %w", c.Pass, c.Shard, c.Shards, c.Scope, err)
	}
	return nil
}

// PassLeaseBreak clears the lease of c's shard if dead still holds it: the
// caller found that process gone (cleanup: the holder ran on this host and
// its pid is no longer alive), so the shard need not wait for the lease to
// lapse. The caller then takes the lease as usual (PassLeaseTake), racing
// any other process fairly. It reports whether it cleared one.
func (s *Store) PassLeaseBreak(ctx context.Context, c PassCursor, dead string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
UPDATE keymigrate.pass_cursors SET holder = NULL, lease_until = NULL
 WHERE pass = $1 AND scope = $2 AND shard = $3 AND shards = $4 AND holder = $5`, c.Pass, c.Scope, c.Shard, c.Shards, dead)
	if err != nil {
		return false, fmt.Errorf("break the lease of %s shard %d/%d of pass %q held by %s: %w", c.Pass, c.Shard, c.Shards, c.Scope, dead, err)
	}
	return tag.RowsAffected() > 0, nil
}
