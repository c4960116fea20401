package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) planCmd() *cobra.Command {
	o := plan.Options{Prices: plan.DefaultPrices()}
	var jsonOut, quiet, recheck, copyFirst bool
	var shard, boundsFrom string
	var inv inventoryFlags
	var b *config.Binder
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Pre-flight report before anything is enqueued: what will move, what will fail, cost and duration",
		Long: `plan is read-only. It lists the legacy prefixes (uploaded/, restored/,
thumbnails/, animated/, meta/) with ListObjectsV2 only, cut into key ranges
listed in parallel (--list-concurrency), joins the listing with the photos rows
in Postgres, and reports:
  - the photos to migrate, the objects and bytes the workers will copy (by
    kind), the largest objects and how many need multipart copies;
  - problems before they become dead letters: rows pointing at missing
    objects, unrecognised legacy keys, invalid owners, ownerless photos,
    legacy objects shared by several rows, objects in archive storage classes,
    orphans no row references;
  - an estimate: S3 requests by operation and their cost, SQS requests, the
    storage cost of holding both copies per day of the grace period, and the
    duration for a fleet of --workers × --concurrency.

Duration: photos/s = min(workers × concurrency × occupancy ÷ latency,
--s3-write-rate ÷ copies per photo); duration = photos to migrate ÷ photos/s,
at the median (p50) and the 90th percentile (p90) of the per-photo latency.
The latency comes from the ledger (a worker's start on a photo to its swap,
over the most recent migrated photos, or those of --calibrate-run), or, with
--calibrate N, from copying N photos' objects to a scratch prefix
(--scratch-prefix, never under users/ or a legacy prefix; the copies are
deleted afterwards; photos rows are never touched). The occupancy is the share
of its slots the calibrating run kept busy (its mean photos in flight ÷ the
most at once, from the ledger; 1 for a scratch copy). A scratch copy measures
S3 only, at the load of that moment: not a worker's per-photo time (a third of
it on the local stack, when the load holds); plan again from a first stage.

Prices are flags whose defaults are the published us-east-1 prices as of 2026
(S3 Standard, SQS standard): check them against the current price list.

With --inventory LOCATION the objects come from an S3 Inventory report of the
bucket instead of a listing: the report is loaded into the ledger's database
first unless it is the loaded one (as 'migratectl inventory load' does, with a
line per data file on standard error), and the plan sends no ListObjectsV2.
Such a plan is an estimate as of the report's date: objects written since
are not counted, objects deleted since are (docs/inventory.md).

Memory stays bounded on any bucket: the listing and the rows are streamed
into temporary tables of one Postgres session and joined there (Postgres
needs temporary disk, about 150 bytes per legacy object and key column); the
plan keeps counters, a top-K heap and a few examples. A progress bar shows on
a terminal (standard error).

A plan splits across processes and machines: --shard i/n analyses shard i of
n, a contiguous slice of the plan's ranges of job ids (every shard cuts the
same ranges from a repeatable sample of the photos table, without talking to
the others), and prints its partial report as JSON (--json is implied). Run
every i from 0 to n-1 with the same options (only --list-concurrency may
differ), started together, each to its own file, then

  migratectl plan merge part-0.json part-1.json ... [--json]

prints the report one process prints, the estimate computed from the sums.
The merge needs no database or bucket; it refuses a missing or duplicate
shard, shards of another n, bucket or options, and shards that cut the job
ids differently (a photos table that changed between their starts: run them
again, or run the shards that differ again with --bounds-from FILE, FILE the
report of a shard whose ranges the others share). Each shard still reads every legacy row once (counting its own, by
the hash of the photo id); the listing and the joins are divided by n. A plan
writes nothing to the ledger: shards cannot collide there. With --inventory,
load the report once first ('migratectl inventory load') so the shards do
not each wait for the load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := b.Err(); err != nil {
				return err
			}
			o.NoSourceRecheck = !recheck
			o.NoCopyFirst = !copyFirst
			if o.Workers <= 0 || o.Concurrency <= 0 {
				return fmt.Errorf("--workers and --concurrency must be positive (got %d and %d)", o.Workers, o.Concurrency)
			}
			if o.Calibrate < 0 {
				return fmt.Errorf("--calibrate %d: give a number of photos (0: read the latency from the ledger)", o.Calibrate)
			}
			if o.GraceDays < 0 {
				return fmt.Errorf("--grace-days %g: give a number of days, 0 or more", o.GraceDays)
			}
			p := o.Prices
			if p.PutPer1000 < 0 || p.GetPer1000 < 0 || p.StorageGBMonth < 0 || p.SQSPerMillion < 0 {
				return fmt.Errorf("prices cannot be negative")
			}
			if err := inv.check(); err != nil {
				return err
			}
			if shard != "" {
				var err error
				if o.Shard, o.Shards, err = parseShardFlag(shard); err != nil {
					return err
				}
				if o.RangeObjects < 0 {
					return fmt.Errorf("--shard %s with --range-objects %d: a plan of the whole bucket at once cannot be split across processes; give a positive --range-objects", shard, o.RangeObjects)
				}
				jsonOut = true // a partial report is for plan merge
			}
			if boundsFrom != "" {
				if shard == "" {
					return fmt.Errorf("--bounds-from %s without --shard: it gives a shard the ranges of another shard's report", boundsFrom)
				}
				r, err := readPlanReport(boundsFrom)
				if err != nil {
					return fmt.Errorf("--bounds-from: %w", err)
				}
				if r.Partial == nil {
					return fmt.Errorf("--bounds-from %s: not the report of a 'migratectl plan --shard i/n'", boundsFrom)
				}
				o.RangeBounds = r.Partial.Cut
			}
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: max(4, inv.maxConns())}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				if inv.location != "" {
					if err := deps.Store.CheckSchema(ctx); err != nil {
						return err
					}
					rep, err := inv.load(ctx, deps, os.Stderr)
					if err != nil {
						return err
					}
					o.Inventory = &rep
				}
				if !quiet {
					o.Progress = progressPrinter()
				}
				r, err := plan.Run(ctx, deps.Store, deps.Objects, o)
				if err != nil {
					return planError(err, o)
				}
				if jsonOut {
					return printJSON(r)
				}
				return r.WriteText(os.Stdout)
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	f.BoolVar(&quiet, "quiet", false, "no progress on standard error")
	f.IntVar(&o.Workers, "workers", 10, "worker processes the duration is estimated for")
	f.IntVar(&o.Concurrency, "concurrency", 16, "photos each worker handles at once (the worker's --concurrency)")
	f.IntVar(&o.Calibrate, "calibrate", 0, "measure the latency by copying N photos' objects to a scratch prefix (0: read it from the ledger)")
	f.StringVar(&o.CalibrateRun, "calibrate-run", "", "read the latency from the photos this run migrated (default: the most recent migrated photos)")
	f.StringVar(&o.ScratchPrefix, "scratch-prefix", "keymigrate-plan-scratch/", "where --calibrate copies (outside users/ and the legacy prefixes)")
	f.Float64Var(&o.GraceDays, "grace-days", 7, "days both copies are kept before cleanup")
	f.Float64Var(&o.S3WriteRate, "s3-write-rate", 3500, "writes per second S3 sustains on a prefix before partitioning it")
	f.Float64Var(&o.Prices.PutPer1000, "price-put", o.Prices.PutPer1000, "dollars per 1,000 S3 PUT, COPY, POST or LIST requests (us-east-1 default; check the current price list)")
	f.Float64Var(&o.Prices.GetPer1000, "price-get", o.Prices.GetPer1000, "dollars per 1,000 S3 GET or HEAD requests (us-east-1 default; check the current price list)")
	f.Float64Var(&o.Prices.StorageGBMonth, "price-storage", o.Prices.StorageGBMonth, "dollars per GB-month of S3 Standard storage (us-east-1 default; check the current price list)")
	f.Float64Var(&o.Prices.SQSPerMillion, "price-sqs", o.Prices.SQSPerMillion, "dollars per million SQS requests, each 64 KiB chunk one request (us-east-1 default; check the current price list)")
	b = config.NewBinder(f)
	b.Bytes(&o.MultipartThreshold, "multipart-threshold", "KEYMIGRATE_MULTIPART_THRESHOLD", 5<<30, "the workers' --multipart-threshold")
	b.Bytes(&o.PartSize, "part-size", "KEYMIGRATE_PART_SIZE", 256<<20, "the workers' --part-size")
	f.BoolVar(&recheck, "recheck-sources", true, "the workers' --recheck-sources (one more HEAD per object where they read sources before copying)")
	f.BoolVar(&copyFirst, "copy-first", true, "the workers' --copy-first; false also for a bucket with per-object ACLs or a server that may drop headers on a copy (`migratectl setup`'s s3: line): a HEAD of each source before its copy but the metadata's (HEADed per photo on either path, and a missing one never copied), and the recheck")
	f.BoolVar(&o.DestinationHead, "destination-head", false, "count a HEAD of the destination before every copy sent, and with --copy-first every photo's metadata's, a missing one's too (workers do it where the server ignores conditional copies, --destination-check head)")
	f.IntVar(&o.ListConcurrency, "list-concurrency", 32, "listing requests in flight")
	f.IntVar(&o.Top, "top", 10, "largest objects listed")
	f.IntVar(&o.Examples, "examples", 5, "examples shown per problem")
	f.IntVar(&o.RangeObjects, "range-objects", 100000, "legacy objects the database holds and joins at a time: the plan is split into ranges of job ids of about this size, analysed one after the other (negative: the whole bucket at once)")
	f.StringVar(&shard, "shard", "", "analyse only shard i of n (i/n, 0 <= i < n) and print its partial report as JSON, for 'migratectl plan merge'")
	f.StringVar(&boundsFrom, "bounds-from", "", "with --shard: cut the ranges as the shard whose partial report is this file did (instead of from a sample of the photos table), for a shard run again after 'plan merge' found the shards cut differently")
	inv.bind(cmd, true)
	cmd.AddCommand(planMergeCmd())
	return cmd
}

func planMergeCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "merge PART.json...",
		Short: "Add up the partial reports of every 'plan --shard i/n' into the report of the whole bucket",
		Long: `merge reads the partial reports (the output of 'migratectl plan --shard i/n')
of every shard 0/n to n-1/n of one plan and prints the report one process
prints of the whole bucket (--json as plan's), the estimate computed from the
summed totals; the latency is the first shard's that has one. It connects to nothing. It refuses,
naming the file and what to do: a report that is not a shard's, a missing or
duplicate shard, shards of different n, buckets or options (only
--list-concurrency may differ), and shards whose slices of the job ids leave
a gap or overlap (a photos table that changed between their starts).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			parts := make([]*plan.Report, len(args))
			for i, name := range args {
				r, err := readPlanReport(name)
				if err != nil {
					return fmt.Errorf("plan merge: %w", err)
				}
				parts[i] = r
			}
			r, err := plan.Merge(args, parts)
			if err != nil {
				return planMergeError(err)
			}
			if jsonOut {
				return printJSON(r)
			}
			return r.WriteText(os.Stdout)
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the report as JSON")
	return cmd
}

// progressPrinter shows the plan's progress on standard error: a bar on a
// terminal, a line every 10 seconds otherwise.
func progressPrinter() func(plan.Progress) {
	if isatty.IsTerminal(os.Stderr.Fd()) {
		bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionSpinnerType(14),
			progressbar.OptionThrottle(100*time.Millisecond))
		return func(p plan.Progress) {
			bar.Describe(describe(p))
			_ = bar.Set64(p.Objects + p.Rows)
			if p.Phase == plan.PhaseCalibrating {
				_ = bar.Finish()
			}
		}
	}
	last := time.Now()
	return func(p plan.Progress) {
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			fmt.Fprintln(os.Stderr, "plan: "+describe(p))
		}
	}
}

func describe(p plan.Progress) string {
	if p.Phase == plan.PhaseInventory {
		return fmt.Sprintf("%s: %s objects read (%s pages of the inventory), %s legacy rows read", p.Phase, humanize.Comma(p.Objects), humanize.Comma(p.Pages), humanize.Comma(p.Rows))
	}
	return fmt.Sprintf("%s: %s objects listed (%s LIST requests), %s legacy rows read", p.Phase, humanize.Comma(p.Objects), humanize.Comma(p.Pages), humanize.Comma(p.Rows))
}

// planError words plan's errors in the command's flags.
func planError(err error, o plan.Options) error {
	if errors.Is(err, plan.ErrRunMigratedNothing) {
		return cli.Reword(err, "--calibrate-run %s: the ledger has no photo this run migrated; give another run (migratectl runs) or --calibrate N", o.CalibrateRun)
	}
	return err
}

// planMergeError words a merge's refusals in plan's flags: which command
// makes the report that is missing.
func planMergeError(err error) error {
	switch {
	case errors.Is(err, plan.ErrShardMissing):
		return cli.Reword(err, "%s: run 'migratectl plan --shard i/n' for each missing i, with the same options as the other shards, and merge again with its report", err)
	case errors.Is(err, plan.ErrShardsCutDifferently):
		return cli.Reword(err, "%s: run every shard again, started together; or run again only the shards that differ, with --bounds-from FILE, FILE the report of a shard whose ranges the others share", err)
	case errors.Is(err, plan.ErrNotAShard):
		return cli.Reword(err, "%s: give the reports of 'migratectl plan --shard i/n', one for every i from 0 to n-1", err)
	}
	return err
}

// readPlanReport reads a plan's JSON report.
func readPlanReport(name string) (*plan.Report, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var r plan.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s is not a plan's JSON report: %w", name, err)
	}
	return &r, nil
}
