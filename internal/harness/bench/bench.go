// Package bench measures the fleet on the local stack against the fastest
// things that could move the same objects, as ratios inside one run (the
// machines are shared and noisy: only ratios mean anything):
//
//   - Bench: the fleet at its defaults (copy, verify, swap) on seeded
//     photos; a plain CopyObject loop of the SDK and s5cmd over the objects
//     the fleet moved, with the fleet's total concurrency, each into fresh
//     keys; and the fleet again, with --recheck-sources=false, on a second
//     backlog. Every S3 request goes through a counting proxy
//     (internal/harness/faultproxy with no faults), which gives the requests per
//     object by operation.
//   - ScaleLatency: a fixed latency added to every S3 request by the same
//     proxy, one worker at growing --concurrency, then 1, 2, 4… workers.
//   - Throttle: the fleet through the proxy with no faults, with a share of
//     requests answered 503 SlowDown, the same share answered 500, and under
//     a hard limit (SlowDown above N requests/s) for a window, then lifted:
//     how much throughput throttling costs, whether the fleet finds the
//     limit, and how fast it recovers.
//
// Workers run as processes of the built binary, so that their CPU time and
// peak memory are the kernel's accounting of each child. Every run starts
// from a fresh database, bucket and queues, removed afterwards. See
// docs/performance.md; deploy/local/bench.sh runs it.
package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// fleetLedger is what the workers achieved, read from the ledger.
type fleetLedger struct {
	Photos, Objects, Unfinished int64
	First, Last                 time.Time
	Commits                     []time.Time // when each moved object was committed
	// Retries are the attempts on photos beyond each one's first (the
	// worker's own retries and redeliveries), HandedBack the failures
	// recorded when a photo was handed back to the queue for a later
	// delivery, DeadLettered the photos left failed.
	Retries, HandedBack, DeadLettered int64
}

// readFleet measures the fleet from the first photo a worker started to the
// last one it finished.
func readFleet(ctx context.Context, st *ledger.Store) (fleetLedger, error) {
	var f fleetLedger
	var first, last *time.Time
	err := st.Pool().QueryRow(ctx, `
SELECT count(*) FILTER (WHERE state IN ('migrated', 'archived')),
       count(*) FILTER (WHERE state NOT IN ('migrated', 'archived')),
       min(started_at) FILTER (WHERE state IN ('migrated', 'archived')),
       max(greatest(swapped_at, archived_at)) FILTER (WHERE state IN ('migrated', 'archived'))
  FROM keymigrate.photo_moves`).Scan(&f.Photos, &f.Unfinished, &first, &last)
	if err != nil {
		return f, fmt.Errorf("read fleet timing: %w", err)
	}
	if first == nil || last == nil || !last.After(*first) {
		return f, fmt.Errorf("no finished photos in the ledger")
	}
	f.First, f.Last = *first, *last
	err = st.Pool().QueryRow(ctx, `
SELECT coalesce(sum(attempts - 1) FILTER (WHERE attempts > 1), 0),
       count(*) FILTER (WHERE state = 'failed'),
       (SELECT count(*) FROM keymigrate.failures WHERE NOT permanent)
  FROM keymigrate.photo_moves`).Scan(&f.Retries, &f.DeadLettered, &f.HandedBack)
	if err != nil {
		return f, fmt.Errorf("read retries: %w", err)
	}
	rows, err := st.Pool().Query(ctx, `SELECT committed_at FROM keymigrate.object_moves WHERE committed_at IS NOT NULL`)
	if err != nil {
		return f, fmt.Errorf("read moved objects: %w", err)
	}
	if f.Commits, err = pgx.CollectRows(rows, pgx.RowTo[time.Time]); err != nil {
		return f, fmt.Errorf("read moved objects: %w", err)
	}
	f.Objects = int64(len(f.Commits))
	return f, nil
}
