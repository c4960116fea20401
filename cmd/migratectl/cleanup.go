package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

const cleanupLong = `cleanup deletes a legacy object only when no row needs it any more:
  - the ledger recorded it as moved, in a committed swap;
  - no photos row (archived, failed, pending, rolled back or inserted after
    the producer ran) references a legacy key of its job: such rows still
    reference or derive the object;
  - every live photo of its job has its own committed copy of it, committed
    at least --grace ago, still with the size and checksum the ledger
    recorded (or superseded by the application's own object);
  - it still has the ETag it was copied from.
Right before the delete the rows are read again; the intent is recorded in the
ledger, and the delete is conditional on the legacy ETag where the server
enforces it. Photos the application deleted need nothing: their legacy objects
go once no other row needs them, and they are counted. Anything else is kept
and counted by reason. Orphans and the objects of archived photos are never
touched.

A pass splits across machines: --shard i/n runs shard i of n (each shard
covers the jobs whose hash falls in its slice, disjoint from the others'; run
every i from 0 to n-1, one process per shard). Each shard keeps its cursor and
its counts in the ledger: interrupt or kill it at any time and run it again
with the same arguments to continue; a finished shard is not redone (--again
starts a finished shard over). A pass is named by --grace, --dry-run and n.
One process runs a shard at a time: it holds the shard's lease in the ledger
(named by --holder: host, pid and a random suffix by default; a pod's host is
its name), renewed every third of --lease-ttl while it runs and released at
its end. A second process started on the same shard of the same pass (a slip,
or a Job's pod retried while the old pod still runs) is refused with the
holder's name and the time its lease lapses: leave the holder be, or, if it
died, run again once its lease lapsed; the shard is then taken over from its
cursor. A process that lost its lease (stalled past --lease-ttl, and taken
over) stops without moving the shard's cursor.
--restart forgets the cursors of that pass
(every shard of it) and exits: run it once, then the shards, to start over
(after the grace period ended for more objects, say). --report prints the
passes the ledger has, shard by shard, and their union, and exits.

The output is counts and a few examples of each kind; --list FILE appends a
tab-separated line per object deleted (dry: would_delete) or kept and per
deleted photo found (a page redone after a kill is listed again).

--inventory uses the loaded S3 Inventory report ('migratectl inventory load'):
a new copy the report lists with the size and ETag keymigrate recorded, and
that the ledger says was written and committed before the report's date, is
not HEADed; every other copy is, and so is every legacy object (its delete
stays conditional on its ETag). A report older than --inventory-max-age is
refused. docs/inventory.md says which staleness that accepts, and why it is
safe beside the live application.`

func (a *app) cleanupCmd() *cobra.Command {
	var o cleanup.Options
	var jsonOut, report, restart, useInventory bool
	var inventoryMaxAge time.Duration
	var shard, list string
	cmd := &cobra.Command{
		Use:   "cleanup --grace DURATION [--shard i/n] [--dry-run] [--list FILE] | --report | --restart",
		Short: "Delete moved legacy objects after a grace period, re-verifying each new copy first (splits across machines)",
		Long:  cleanupLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if report {
				return a.run(connect.Options{Need: config.Need{DB: true}, MaxConns: 2, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
					return printCleanupPasses(ctx, deps.Store, jsonOut)
				})
			}
			if !cmd.Flags().Changed("grace") {
				return errors.New("give --grace (for example --grace 168h): legacy objects are deleted only that long after their move committed")
			}
			var err error
			if o.Shard, o.Shards, err = parseShardFlag(shard); err != nil {
				return err
			}
			if restart {
				return a.run(connect.Options{Need: config.Need{DB: true}, MaxConns: 2, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
					if err := cleanup.Reset(ctx, deps.Store, o); err != nil {
						return err
					}
					fmt.Printf("cleanup pass %q of %d shards forgotten: its shards start over when run\n", cleanup.Scope(o), o.Shards)
					return nil
				})
			}
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: 4, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, log *zap.Logger) error {
				resolveCapabilities(ctx, deps, log)
				if useInventory {
					r, err := cleanupInventory(ctx, deps.Store, inventoryMaxAge)
					if err != nil {
						return err
					}
					o.Inventory = &r
				}
				return runCleanup(ctx, deps, o, list, jsonOut)
			})
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Grace, "grace", 0, "delete only where every move of the object committed at least this long ago (required; 0 allowed)")
	f.StringVar(&shard, "shard", "0/1", "i/n: run shard i of n of the pass (0 <= i < n); each shard has its own cursor")
	f.StringVar(&o.Holder, "holder", "", "name this process in the shard's lease (default: host/pid/random)")
	f.DurationVar(&o.LeaseTTL, "lease-ttl", ledger.DefaultLeaseTTL, "the shard's lease lapses this long after its holder last renewed it (every third of it): how long a dead process keeps its shard from others")
	f.StringVar(&list, "list", "", "append every object deleted (dry: that would be) or kept to this file, one tab-separated line each")
	f.BoolVar(&report, "report", false, "print the passes in the ledger, shard by shard, and their union; run nothing")
	f.BoolVar(&restart, "restart", false, "forget the cursors of every shard of this pass (same --grace, --dry-run and n) so that it starts over; run nothing")
	f.BoolVar(&o.Again, "again", false, "if this shard of the pass finished, start it over (to run cleanup every so often as more moves pass the grace period)")
	f.BoolVar(&useInventory, "inventory", false, "use the loaded S3 Inventory report ('migratectl inventory load'): a new copy it vouches for is not HEADed")
	f.DurationVar(&inventoryMaxAge, "inventory-max-age", 72*time.Hour, "with --inventory: refuse a report older than this (docs/inventory.md, cleanup)")
	f.IntVar(&o.Batch, "batch", 1000, "legacy objects checked and deleted per page (at most 1000)")
	f.IntVar(&o.Concurrency, "concurrency", 16, "S3 requests in flight (HEADs, deletes)")
	f.BoolVar(&o.AllowFullScans, "allow-full-scans", false, "run even where the photos table (1,000,000 rows or more) lacks the indexes docs/guarantees.md lists: each page then reads the whole table")
	f.BoolVar(&o.DryRun, "dry-run", false, "count what would be deleted and its size; delete nothing")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	return cmd
}

// cleanupInventory is the loaded report cleanup may trust, if recent enough.
func cleanupInventory(ctx context.Context, st *ledger.Store, maxAge time.Duration) (ledger.InventoryReport, error) {
	r, ok, err := st.InventoryLatest(ctx)
	if err != nil {
		return r, err
	}
	if !ok {
		return r, &cli.ExitError{Code: 2, Err: errors.New("--inventory: no inventory report is loaded completely ('migratectl inventory status' says why; 'migratectl inventory load' loads one)")}
	}
	if age := time.Since(r.CreatedAt); age > maxAge {
		return r, &cli.ExitError{Code: 2, Err: fmt.Errorf("--inventory: the loaded report of %s is %s old, over --inventory-max-age %s: load a newer one, or run without --inventory", r.CreatedAt.UTC().Format(time.RFC3339), age.Round(time.Minute), maxAge)}
	}
	return r, nil
}

// parseShardFlag reads --shard i/n.
func parseShardFlag(v string) (shard, shards int, err error) {
	if _, err := fmt.Sscanf(v, "%d/%d", &shard, &shards); err != nil || fmt.Sprintf("%d/%d", shard, shards) != v {
		return 0, 0, fmt.Errorf("--shard %q: give i/n, shard i of n with 0 <= i < n (for example --shard 0/4)", v)
	}
	if _, _, err := ledger.CleanupShardRange(shard, shards); err != nil {
		return 0, 0, fmt.Errorf("--shard %q: give i/n with 0 <= i < n (for example --shard 0/4 to --shard 3/4)", v)
	}
	return shard, shards, nil
}

func runCleanup(ctx context.Context, deps *connect.Deps, o cleanup.Options, list string, jsonOut bool) error {
	if list != "" {
		f, err := os.OpenFile(list, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("--list: %w", err)
		}
		w := bufio.NewWriter(f)
		defer func() { _ = w.Flush(); _ = f.Close() }()
		o.List = w
	}
	if !jsonOut {
		said := false
		o.Progress = func(r *cleanup.Report) {
			if r.TookOverFrom != "" && !said {
				said = true
				fmt.Fprintf(os.Stderr, "cleanup shard %d/%d: took over the lapsed lease of %s (it stopped renewing: dead or cut off); continuing from the shard's cursor\n", r.Shard, r.Shards, r.TookOverFrom)
			}
			fmt.Fprintf(os.Stderr, "cleanup shard %d/%d: %d checked, %d deleted (%s), %d kept\n", r.Shard, r.Shards, r.Checked, r.Deleted, humanize.IBytes(uint64(r.Bytes)), r.KeptTotal())
		}
	}
	rep, err := cleanup.Run(ctx, deps.Store, deps.Objects, o)
	err = cleanupError(err)
	if rep == nil {
		return err
	}
	if jsonOut {
		_ = printJSON(rep)
		return err
	}
	if rep.AlreadyFinished {
		fmt.Printf("shard %d/%d of cleanup pass %q had finished: nothing done (--again starts it over)\n", rep.Shard, rep.Shards, rep.Scope)
	}
	printCleanupReport(rep)
	return err
}

func printCleanupReport(rep *cleanup.Report) {
	verb := "deleted"
	if rep.DryRun {
		verb = "dry run: would delete"
	}
	fmt.Printf("%s %d legacy objects, %s (%d checked)\n", verb, rep.Deleted, humanize.IBytes(uint64(rep.Bytes)), rep.Checked)
	if len(rep.DeleteExamples) > 0 {
		fmt.Printf("  for example:\n")
	}
	for _, k := range rep.DeleteExamples {
		fmt.Printf("    %s\n", k)
	}
	if rep.CopiesVouched > 0 {
		fmt.Printf("new copies: %d HEADed, %d vouched for by the S3 Inventory report (not HEADed)\n", rep.CopiesHeaded, rep.CopiesVouched)
	} else {
		fmt.Printf("new copies: %d HEADed\n", rep.CopiesHeaded)
	}
	if rep.Recovered > 0 {
		fmt.Printf("recorded %d deletions an interrupted earlier run made\n", rep.Recovered)
	}
	if rep.DeletedPhotos > 0 {
		fmt.Printf("%d photos were deleted by the application (rows gone); recorded as deleted, e.g. %s\n", rep.DeletedPhotos, strings.Join(rep.DeletedPhotoExamples, ", "))
	}
	if n := rep.KeptTotal(); n > 0 {
		fmt.Printf("kept %d:\n", n)
		for _, kind := range rep.KeptKinds() {
			fmt.Printf("  %s: %d\n", kind, rep.Kept[kind])
			for _, s := range rep.Examples(kind) {
				fmt.Printf("    %s: %s\n", s.OldKey, s.Reason)
			}
		}
	}
}

// printCleanupPasses prints every cleanup pass the ledger has cursors for,
// shard by shard, and the union of their tallies.
func printCleanupPasses(ctx context.Context, st *ledger.Store, jsonOut bool) error {
	passes, err := cleanup.Status(ctx, st)
	if err != nil {
		return err
	}
	if jsonOut {
		return printJSON(passes)
	}
	if len(passes) == 0 {
		fmt.Println("no cleanup pass has run")
		return nil
	}
	for _, p := range passes {
		state := "finished"
		if !p.Total.Finished {
			state = "not finished"
		}
		fmt.Printf("cleanup pass %q, %d shards: %s\n", p.Scope, p.Shards, state)
		for i, r := range p.Each {
			s := "at " + cursorOrStart(p.Cursors[i]) + ", " + p.Leases[i].String()
			if r.Finished {
				s = "finished"
			}
			fmt.Printf("  shard %d/%d: %s; %d checked, %d deleted (%s), %d kept\n", r.Shard, r.Shards, s, r.Checked, r.Deleted, humanize.IBytes(uint64(r.Bytes)), r.KeptTotal())
		}
		if len(p.Missing) > 0 {
			fmt.Printf("  shards never run: %v\n", p.Missing)
		}
		fmt.Print("  all shards: ")
		printCleanupReport(p.Total)
	}
	return nil
}

func cursorOrStart(c string) string {
	if c == "" {
		return "the start"
	}
	return c
}

// cleanupError words cleanup's errors in the command's flags.
func cleanupError(err error) error {
	var missing *cleanup.MissingIndexesError
	if errors.As(err, &missing) {
		return cli.Reword(err, "%v\nor pass --allow-full-scans to run without them", err)
	}
	return err
}
