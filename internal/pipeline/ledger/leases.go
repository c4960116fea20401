package ledger

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
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

// DefaultLeaseTTL is how long a shard's lease holds unless renewed, when a
// pass is given none: long enough that a renewal every third of it survives
// a database failover, short enough that a dead process's shard is not kept
// from the others for long (and a killed process's rerun on the same host
// takes it at once: PassLeaseHold).
const DefaultLeaseTTL = 2 * time.Minute

// LeaseHolderName names this process for a shard's lease: the host (a pod's
// name in Kubernetes), the pid, and a random suffix (a pod retried on the
// same host may reuse a pid). PassLeaseHold reads the host and the pid back
// to find a holder of this host that is gone.
func LeaseHolderName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/pid %d/%x", host, os.Getpid(), b)
}

// PassLease is the lease of a pass's shard this process holds
// (PassLeaseHold), renewed in the background until Release.
type PassLease struct {
	// Previous names the holder of a lapsed lease (or of one held by a
	// process gone from this host) this process took over, "" otherwise.
	Previous string

	ctx     context.Context
	release func()
}

// Release stops the renewal and gives the lease up (nothing if another
// process took it over meanwhile). It is safe to call once.
func (l *PassLease) Release() { l.release() }

// Why returns the reason the run stopped: ErrLeaseLost's error if the lease
// was lost (whatever a page was doing when it was, that is why), err
// otherwise.
func (l *PassLease) Why(err error) error {
	if cause := context.Cause(l.ctx); err != nil && errors.Is(cause, ErrLeaseLost) {
		return cause
	}
	return err
}

// PassLeaseHold takes the lease of c's shard for holder (PassLeaseTake) and
// renews it every third of ttl until Release. A shard whose lease a process
// of this host that is gone holds (killed, crashed: its pid no longer
// exists) is taken over at once (PassLeaseBreak), so an operator running it
// again after a kill need not wait for the lease to lapse; a live holder, or
// one of another host, still refuses it with a *LeaseHeldError.
//
// If a renewal finds the lease lost (it lapsed, the database out of reach too
// long, and another process took the shard over), the returned context is
// cancelled with ErrLeaseLost: the caller stops at its next page, and its
// cursor updates are refused meanwhile if it set c.Holder to holder
// (PassCursorAdvance).
func (s *Store) PassLeaseHold(ctx context.Context, c PassCursor, holder string, ttl time.Duration) (context.Context, *PassLease, error) {
	previous, err := s.PassLeaseTake(ctx, c, holder, ttl)
	var held *LeaseHeldError
	if errors.As(err, &held) && deadHere(held.Holder) {
		// Its holder is cleared only if it still holds it, then the lease
		// is taken as usual, racing any other process fairly.
		if _, err := s.PassLeaseBreak(ctx, c, held.Holder); err != nil {
			return ctx, nil, err
		}
		previous, err = s.PassLeaseTake(ctx, c, holder, ttl)
		if err == nil && previous == "" {
			previous = held.Holder
		}
	}
	if err != nil {
		return ctx, nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := s.PassLeaseRenew(ctx, c, holder, ttl); errors.Is(err, ErrLeaseLost) {
					cancel(err)
					return
				}
				// Another error (the database briefly out of reach) is
				// retried at the next tick: the lease has two more.
			}
		}
	}()
	release := func() {
		close(stop)
		<-done
		cancel(nil)
		// The run's context may be cancelled (a signal): release with one
		// of its own, briefly. A release that fails leaves the lease to lapse.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		_ = s.PassLeaseRelease(rctx, c, holder)
	}
	return ctx, &PassLease{Previous: previous, ctx: ctx, release: release}, nil
}

// deadHere reports whether holder (LeaseHolderName's form) names a process
// of this host that no longer exists. Only a certain "no such process"
// counts: a pid reused by another process, or one this user may not signal,
// reads as alive, and the lease is then left to lapse. (Two containers
// sharing a host name but not a pid namespace could read a live holder as
// dead; the holder whose lease was broken finds it lost at its next renewal
// and stops, and its cursor updates are refused meanwhile.)
func deadHere(holder string) bool {
	host, _ := os.Hostname()
	rest, ok := strings.CutPrefix(holder, host+"/pid ")
	if !ok || host == "" {
		return false
	}
	pidText, _, ok := strings.Cut(rest, "/")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
