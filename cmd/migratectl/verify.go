package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) verifyCmd() *cobra.Command {
	var o verify.Options
	var jsonOut, requeue, restart, report, useInventory bool
	var shard string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the migration (the Phase 3 gate); exit 2 and list problems if any check fails",
		Long: `verify checks, without changing anything:
  - no row (archived rows aside) references a legacy key;
  - every key a row references is inside users/{owner_id}/ and exists;
  - every object the ledger records as moved exists at its new key with the
    recorded size and checksum (or ETag);
  - the legacy object of every move still exists unless cleanup deleted it, and
    still has the ETag it was copied from;
  - no migrated photo has legacy objects that were never moved (an animation
    written under the old layout after the swap); --requeue enqueues them;
  - rows not migrated yet (archived ones included) still have every legacy
    object they reference or derive.
It also reports, without failing on them: orphan legacy objects (no row
references them and the ledger did not move them, like unreferenced restores);
moved objects the application rewrote, superseded or deleted since (a user's
deletion is final: --requeue never copies those again; --requeue --repair does,
for an operator who knows they were lost rather than deleted); objects of
photos the application deleted.
With --deep it also compares each moved object with its legacy source: size,
content type, user metadata, then checksum, or the bytes themselves.

A pass, resumable and split across machines: verify keeps its place and its
tally in the ledger after every page (keymigrate.pass_cursors). Killed at any
point, the same command continues where it stopped; a shard that finished
prints its recorded verdict without checking again while other shards of its
pass are still running (--restart checks again from the start). Once every
shard finished, the pass is complete: its verdict stands; the next unsharded
run starts a new pass, a sharded pass is started over by --restart only (a
retried pod must not start a pass of one shard). --shard i/n makes this process shard i of n: its own range
of the moved objects (by new key), of the photos (by id) and of the legacy
prefixes' key ranges, fixed in the ledger by the first shard that starts, so
n machines (a Kubernetes Indexed Job, deploy/k8s) check everything once
between them. A shard's verdict is its own; the gate is the union of all n:
'verify --report --shard 0/n' (any i) prints it once every shard finished, and
names the shards missing otherwise. Passes are told apart by their options
(--run, --deep, --inventory, --requeue, --repair) and n.

One process runs a shard at a time, as with cleanup: it holds the shard's
lease in the ledger (named by --holder: host, pid and a random suffix by
default; a pod's host is its name), renewed every third of --lease-ttl while
it runs and released at its end. A second process started on the same shard
of the same pass (a Job's pod retried while the old pod still runs, a slip) is
refused with the holder's name and the time its lease lapses: leave the
holder be, or, if it died, run again once its lease lapsed; the shard is then
taken over from its cursor. A rerun on the host of a process that was killed
takes its shard at once. A process that lost its lease (stalled past
--lease-ttl and taken over, or its pass forgotten by --restart and started
again by another) stops without moving the shard's cursor: its checks never
count in another pass's verdict. 'verify --report' names the holder of each
unfinished shard and when its lease lapses.

--inventory reads the loaded S3 Inventory report ('migratectl inventory
load'): an object it lists with the size and ETag the ledger expects, and
that the ledger did not write after the report's date, is not HEADed, and the
legacy prefixes are read from it rather than listed (docs/inventory.md says
which staleness this tolerates and why it is safe).

--run RUN checks only the rows and moved objects of the photos the ledger
attributes to that run (the legacy prefixes are not listed: run verify without
--run for orphans and unmoved legacy objects). With --shard i/n the run's
photos are split by a hash of their id: shard i checks the rows and moved
objects of its photos, and the gate is the union of the n shards, as above
('verify --run RUN --report --shard 0/n').

Memory stays bounded: pages are checked and folded into counts; problems,
orphans and photos to requeue or repair are listed up to --max-problems
(all are counted); --requeue sends a page's photos as it goes.

Exit status: 0 when every check passed, 2 when some failed (listed) or, with
--report, when shards are missing, 1 on error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Repair && !requeue {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("--repair goes with --requeue: it enqueues the photos whose copies are missing, with a repair request")}
			}
			var err error
			if o.Shard, o.Shards, err = parseShard(shard); err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			if report && restart {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("--report reads the pass's recorded tallies; --restart forgets them: give one of them")}
			}
			o.Resume = true
			need := config.Need{DB: true, Bucket: !report, Queue: requeue && !report}
			return a.run(connect.Options{Need: need, MaxConns: 4}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				if err := a.verifyPrepare(ctx, deps, &o, requeue, useInventory); err != nil {
					return err
				}
				if report {
					return verifyUnion(ctx, deps, o, jsonOut)
				}
				if restart {
					if err := verify.ResetPass(ctx, deps.Store, o); err != nil {
						return err
					}
				}
				return verifyShard(ctx, deps, o, jsonOut)
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Deep, "deep", false, "also compare every moved object with its legacy source")
	f.StringVar(&o.RunID, "run", "", "check only the photos of this run (migratectl runs lists them)")
	f.StringVar(&shard, "shard", "0/1", "i/n: be shard i of n verify processes, each over its own ranges (0 <= i < n)")
	f.StringVar(&o.Holder, "holder", "", "name this process in the shard's lease (default: host/pid/random)")
	f.DurationVar(&o.LeaseTTL, "lease-ttl", ledger.DefaultLeaseTTL, "the shard's lease lapses this long after its holder last renewed it (every third of it): how long a dead process keeps its shard from others")
	f.BoolVar(&restart, "restart", false, "forget the pass's cursors and tallies (all its shards) and check again from the start")
	f.BoolVar(&report, "report", false, "print the verdict of the pass's n shards together (the gate), or which shards are missing; checks nothing")
	f.BoolVar(&useInventory, "inventory", false, "use the loaded S3 Inventory report: HEAD only the objects it cannot vouch for")
	f.IntVar(&o.Concurrency, "concurrency", 16, "objects checked at once (a moved object's copy and source are HEADed together)")
	f.IntVar(&o.MaxProblems, "max-problems", 100, "problems, orphans and photos listed (all are counted)")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	f.BoolVar(&requeue, "requeue", false, "enqueue the migrated photos that still have unmoved legacy objects, as they are found (needs --queue-url)")
	f.BoolVar(&o.Repair, "repair", false, "with --requeue: also copy again, from their legacy objects, the moved objects that are missing (only if you know they were lost, not deleted by the application)")
	return cmd
}

// parseShard reads --shard i/n.
func parseShard(s string) (int, int, error) {
	i, n, ok := strings.Cut(s, "/")
	shard, err1 := strconv.Atoi(i)
	shards, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil || shards < 1 || shard < 0 || shard >= shards {
		return 0, 0, fmt.Errorf("--shard %q: give i/n with 0 <= i < n, e.g. --shard 0/4", s)
	}
	return shard, shards, nil
}

// verifyPrepare resolves the inventory and the requeue hook, which name the
// pass as much as the flags do.
func (a *app) verifyPrepare(ctx context.Context, deps *connect.Deps, o *verify.Options, requeue, useInventory bool) error {
	if useInventory {
		rep, ok, err := deps.Store.InventoryLatest(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return &cli.ExitError{Code: 2, Err: fmt.Errorf("--inventory: no inventory report is loaded completely ('migratectl inventory status' says why; 'migratectl inventory load' loads one)")}
		}
		o.Inventory = &rep
	}
	if requeue {
		runID := "verify-requeue-" + time.Now().UTC().Format("20060102T150405Z")
		o.Requeue = func(ctx context.Context, photos []string, repair bool) error {
			if deps.Queue == nil {
				return nil // --report: nothing is sent
			}
			return enqueue(ctx, deps.Queue, photos, runID, repair)
		}
	}
	return nil
}

// verifyShard runs (or resumes) this process's shard and prints its verdict.
func verifyShard(ctx context.Context, deps *connect.Deps, o verify.Options, jsonOut bool) error {
	r, err := verify.Run(ctx, deps.Store, deps.Objects, o)
	if err != nil {
		return err
	}
	if r.TookOverFrom != "" {
		fmt.Fprintf(os.Stderr, "verify shard %d/%d: took over the lease of %s (it stopped renewing, or is gone from this host); continued from the shard's cursor\n", r.Shard, r.Shards, r.TookOverFrom)
	}
	if jsonOut {
		_ = printJSON(r)
	} else {
		printReport(r, o)
	}
	if !r.OK() {
		return &cli.ExitError{Code: 2, Err: fmt.Errorf("verification failed: %d problems", r.ProblemCount)}
	}
	return nil
}

// verifyUnion prints the gate: the union of the pass's shards.
func verifyUnion(ctx context.Context, deps *connect.Deps, o verify.Options, jsonOut bool) error {
	u, states, err := verify.Union(ctx, deps.Store, o)
	if err != nil && !errors.Is(err, verify.ErrNotDone) {
		return err
	}
	var missing []string
	for _, s := range states {
		if !s.Done {
			state := "not started"
			if s.Started {
				state = "in phase " + s.Phase
				if s.Phase == "" {
					state = "started"
				}
				state += "; " + s.Lease.String()
			}
			missing = append(missing, fmt.Sprintf("%d (%s)", s.Shard, state))
		}
	}
	if jsonOut {
		_ = printJSON(map[string]any{"complete": len(missing) == 0, "missing_shards": missing, "report": u})
	} else if len(missing) > 0 {
		fmt.Printf("verify pass %q of %d shards: %d of %d finished; missing shards: %s\n", verify.Scope(o), o.Shards, o.Shards-len(missing), o.Shards, strings.Join(missing, ", "))
	} else {
		printReport(u, o)
	}
	switch {
	case len(missing) > 0:
		return &cli.ExitError{Code: 2, Err: fmt.Errorf("no verdict yet: %d of %d shards have not finished", len(missing), o.Shards)}
	case !u.OK():
		return &cli.ExitError{Code: 2, Err: fmt.Errorf("verification failed: %d problems", u.ProblemCount)}
	}
	return nil
}

// enqueue sends one message per photo, in batches.
func enqueue(ctx context.Context, q *queue.Queue, photos []string, runID string, repair bool) error {
	for start := 0; start < len(photos); start += queue.MaxBatch {
		var bodies []string
		for _, id := range photos[start:min(start+queue.MaxBatch, len(photos))] {
			bodies = append(bodies, queue.Encode(queue.Message{PhotoID: id, RunID: runID, Repair: repair}))
		}
		if err := q.SendBatch(ctx, bodies, time.Minute); err != nil {
			return err
		}
	}
	return nil
}

func printReport(r *verify.Report, o verify.Options) {
	switch {
	case r.Shard < 0:
		fmt.Printf("pass:              %d shards, all finished (the union of their tallies)\n", r.Shards)
	case r.AlreadyDone:
		fmt.Printf("shard:             %d/%d finished earlier: its recorded tally (--restart checks again)\n", r.Shard, r.Shards)
	case r.Shards > 1:
		fmt.Printf("shard:             %d/%d (the gate is 'verify --report --shard i/%d' once all shards finished)\n", r.Shard, r.Shards, r.Shards)
	}
	if r.RunID != "" {
		fmt.Printf("run:               %s (only its photos; legacy prefixes not listed)\n", r.RunID)
	}
	fmt.Printf("rows checked:      %d (%d archived, left as they are)\n", r.RowsChecked, r.ArchivedRows)
	fmt.Printf("moved objects:     %d checked at their new keys\n", r.ObjectsChecked)
	fmt.Printf("legacy objects:    %d still present, %d cleaned up, %d listed\n", r.LegacyPresent, r.LegacyDeleted, r.ListedObjects)
	if r.PurgedRows+r.PurgedReferences+r.LegacyPurged > 0 {
		// What `archived purge` deleted: not problems, shown so that an
		// operator sees why those keys are gone.
		fmt.Printf("archived purge:    %d rows purged and %d references of rows partly purged (awaiting the application's DELETE), %d moves' legacy objects purged\n",
			r.PurgedRows, r.PurgedReferences, r.LegacyPurged)
	}
	fmt.Printf("requests:          %d HEAD", r.Heads)
	if o.Inventory != nil {
		fmt.Printf(", %d checks answered by the inventory of %s", r.Vouched, o.Inventory.CreatedAt.UTC().Format(time.RFC3339))
	}
	fmt.Println()
	if o.Deep {
		fmt.Printf("deep comparisons:  %d copies identical to their legacy source\n", r.DeepCompared-r.ProblemsByKind[verify.CopyDiffersFromLegacy])
	}
	fmt.Printf("application:       %d rewritten, %d superseded, %d missing (deleted by the application, or lost), %d of deleted photos\n", r.Rewritten, r.Superseded, r.Missing, r.DeletedPhotos)
	if r.LegacyListed {
		fmt.Printf("orphans:           %d legacy objects no row references (reported, kept)\n", r.OrphanCount)
	}
	for _, k := range r.Orphans {
		fmt.Printf("  orphan %s\n", k)
	}
	if n := r.OrphanCount - int64(len(r.Orphans)); n > 0 {
		fmt.Printf("  … %d more orphans\n", n)
	}
	printPhotos(r, o)
	if r.OK() {
		fmt.Println("verify: OK")
		return
	}
	fmt.Fprintf(os.Stdout, "verify: FAILED, %d problems\n", r.ProblemCount)
	kinds := make([]string, 0, len(r.ProblemsByKind))
	for kind := range r.ProblemsByKind {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		fmt.Printf("  %-28s %d\n", kind, r.ProblemsByKind[kind])
	}
	for _, p := range r.Problems {
		fmt.Printf("  %s photo=%s key=%s: %s\n", p.Kind, p.PhotoID, p.Key, p.Detail)
	}
	if int64(len(r.Problems)) < r.ProblemCount {
		fmt.Printf("  … %d more (raise --max-problems)\n", r.ProblemCount-int64(len(r.Problems)))
	}
}

// printPhotos says what --requeue and --repair did or would do (the photos
// listed are examples, up to --max-problems).
func printPhotos(r *verify.Report, o verify.Options) {
	if r.RequeueCount > 0 {
		if o.Requeue != nil {
			fmt.Printf("re-enqueued %d photos with unmoved legacy objects as they were found; verify again once workers have drained the queue: %s\n", r.RequeueCount, strings.Join(r.Requeue, " "))
		} else {
			fmt.Printf("%d photos have unmoved legacy objects; verify --requeue enqueues them: %s\n", r.RequeueCount, strings.Join(r.Requeue, " "))
		}
	}
	if r.RepairCount > 0 {
		if o.Requeue != nil && o.Repair {
			fmt.Printf("asked for the repair of %d photos with missing copies as they were found: %s\n", r.RepairCount, strings.Join(r.Repair, " "))
		} else {
			fmt.Printf("%d photos have copies missing; not repaired: if they were lost rather than deleted by the application, run verify --requeue --repair: %s\n", r.RepairCount, strings.Join(r.Repair, " "))
		}
	}
}
