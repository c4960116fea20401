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
	t, err := st.PhotoMoveTotals(ctx)
	if err != nil {
		return f, err
	}
	f.Photos, f.Unfinished = t.Finished, t.Unfinished
	if t.FirstStarted == nil || t.LastFinished == nil || !t.LastFinished.After(*t.FirstStarted) {
		return f, fmt.Errorf("no finished photos in the ledger")
	}
	f.First, f.Last = *t.FirstStarted, *t.LastFinished
	f.Retries, f.DeadLettered, f.HandedBack = t.Retries, t.Failed, t.HandedBack
	moved, err := committedMoves(ctx, st)
	if err != nil {
		return f, err
	}
	f.Commits = make([]time.Time, 0, len(moved))
	for _, m := range moved {
		f.Commits = append(f.Commits, *m.CommittedAt)
	}
	f.Objects = int64(len(f.Commits))
	return f, nil
}

// committedMoves are every committed object move, in new key order, read a
// page at a time.
func committedMoves(ctx context.Context, st *ledger.Store) ([]ledger.ObjectMove, error) {
	const page = 10_000
	var out []ledger.ObjectMove
	after := ""
	for {
		ms, err := st.ObjectMoveListCommitted(ctx, after, page)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
		if len(ms) < page {
			return out, nil
		}
		after = ms[len(ms)-1].NewKey
	}
}
