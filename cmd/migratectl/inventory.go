package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	opsinv "github.com/keymigrate/keymigrate/internal/ops/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) inventoryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Load an S3 Inventory report into the ledger's database, for plan, verify and cleanup (load, status)",
	}
	cmd.AddCommand(a.inventoryLoadCmd(), a.inventoryStatusCmd())
	return cmd
}

// inventoryFlags are the flags of a command that loads a report.
type inventoryFlags struct {
	location     string
	workers      int
	tempDir      string
	replaceNewer bool
	workersFlag  string
}

// bind adds the flags to cmd. In plan, whose --workers is the fleet's, the
// load's own flags take the prefix "inventory-"; there --inventory is
// optional.
func (f *inventoryFlags) bind(cmd *cobra.Command, inPlan bool) {
	fl := cmd.Flags()
	usage, prefix := "the S3 Inventory report: s3://bucket/path/manifest.json, its report or configuration directory, or a local directory", ""
	if inPlan {
		usage += " (loaded unless it is the loaded one; the objects are then read from it instead of listing the bucket)"
		prefix = "inventory-"
	}
	f.workersFlag = "--" + prefix + "workers"
	fl.StringVar(&f.location, "inventory", "", usage)
	fl.IntVar(&f.workers, prefix+"workers", 4, "data files of the report loaded at once by this process")
	fl.StringVar(&f.tempDir, prefix+"temp-dir", "", "where data files read from S3 are copied while loaded, one per worker (default the system's temporary directory)")
	fl.BoolVar(&f.replaceNewer, "replace-newer", false, "let this report replace a newer loaded one")
	if !inPlan {
		_ = cmd.MarkFlagRequired("inventory")
	}
}

func (f *inventoryFlags) check() error {
	if f.workers < 1 {
		return fmt.Errorf("%s %d: give 1 or more", f.workersFlag, f.workers)
	}
	return nil
}

// maxConns is what a load needs of the database: a connection per worker,
// one for the progress and one for the rest (a plan's session).
func (f *inventoryFlags) maxConns() int { return f.workers + 2 }

// load loads the report the flags name, printing a line per data file to w.
func (f *inventoryFlags) load(ctx context.Context, deps *connect.Deps, w io.Writer) (ledger.InventoryReport, error) {
	o := opsinv.Options{Bucket: deps.Objects.Bucket(), Workers: f.workers, TempDir: f.tempDir, ReplaceNewer: f.replaceNewer,
		Begun: func(r ledger.InventoryReport) {
			fmt.Fprintf(w, "inventory: loading the report of s3://%s created %s (%s old), %s, %d data files (%d loaded before), from %s\n",
				r.SourceBucket, r.CreatedAt.Format(time.RFC3339), opsinv.Age(time.Since(r.CreatedAt)), r.Format, r.Files, r.LoadedFiles, r.Location)
		},
		Progress: func(p opsinv.Progress) {
			fmt.Fprintf(w, "inventory: %d/%d files loaded, %s objects; this process: %s (%s objects in %s) at %s objects/s\n",
				p.Report.LoadedFiles, p.Report.Files, humanize.Comma(p.Report.Rows), p.File.File.Key, humanize.Comma(p.File.Rows),
				p.File.Elapsed.Round(time.Millisecond), humanize.Comma(int64(p.RowsPerSecond())))
		}}
	res, err := opsinv.Load(ctx, deps.Store, deps.Objects.Client(), f.location, o)
	if err != nil {
		return ledger.InventoryReport{}, err
	}
	r := res.Report
	age := opsinv.Age(time.Since(r.CreatedAt))
	if res.AlreadyLoaded {
		fmt.Fprintf(w, "inventory: the report of s3://%s created %s (%s old) is loaded already: %d files, %s objects\n",
			r.SourceBucket, r.CreatedAt.Format(time.RFC3339), age, r.Files, humanize.Comma(r.Rows))
	} else {
		fmt.Fprintf(w, "inventory: loaded the report of s3://%s created %s (%s old): %d files, %s objects; this process loaded %d files, %s objects in %s\n",
			r.SourceBucket, r.CreatedAt.Format(time.RFC3339), age, r.Files, humanize.Comma(r.Rows), res.Files, humanize.Comma(res.Rows), res.Elapsed.Round(time.Second))
	}
	return r, nil
}

func (a *app) inventoryLoadCmd() *cobra.Command {
	var f inventoryFlags
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Load an S3 Inventory report of the migration's bucket into the ledger's database (resumable; several machines may share the load)",
		Long: `inventory load reads an S3 Inventory report (CSV or Parquet; manifest.json,
manifest.checksum and the data files, each checked against the manifest's MD5)
and copies its objects into the ledger's database, where plan, verify and
cleanup read them instead of listing the bucket and sending a HEAD per object.

--inventory is s3://bucket/path/manifest.json, the report's dated directory, the
inventory configuration's directory (its newest report), or the same in a local
directory (aws s3 sync of the destination). The report must be of the
migration's bucket (--bucket): a report of another bucket is refused.

The load is resumable and can be split: each data file is loaded in one
transaction (its records, then the mark that it is loaded), so a killed load
is simply run again and redoes only the file it was in; --workers files load
at once, and the same command run on several machines at once
shares the files between them. It prints a line per data file loaded and ends
when every file is loaded (by whichever process).

The database holds one report at a time: loading a newer report replaces the
older one's objects (an older report than the loaded one is refused unless
--replace-newer). The objects' table is unlogged (fast to load): a Postgres
crash or failover empties it, 'inventory status' says so, and this command
loads it again. See docs/inventory.md for what plan, verify and cleanup make of
a report's date.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: f.maxConns(), CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				_, err := f.load(ctx, deps, os.Stdout)
				return err
			})
		},
	}
	f.bind(cmd, false)
	return cmd
}

func (a *app) inventoryStatusCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Which S3 Inventory report is loaded: its date and age, files and objects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true}, MaxConns: 2, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				s, err := opsinv.ReadStatus(ctx, deps.Store)
				if err != nil {
					return err
				}
				if jsonOut {
					return printJSON(s)
				}
				return s.WriteText(os.Stdout)
			})
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print as JSON")
	return cmd
}

// inventoryError words, in migratectl's commands and flags, the errors of
// reading or loading the S3 Inventory: the ledger and the loader describe
// the condition, the command says what to run. Every subcommand's error
// passes through it (main: wordErrors), since plan, verify, cleanup and
// inventory all read the report.
func inventoryError(err error) error {
	var older *ledger.InventoryOlderError
	var bucket *opsinv.BucketError
	switch {
	case errors.Is(err, ledger.ErrInventoryNotLoaded):
		return cli.Reword(err, "%v: run `migratectl inventory load --inventory LOCATION` (or finish the load in progress)", err)
	case errors.Is(err, ledger.ErrInventoryEmptied):
		return cli.Reword(err, "%v: run `migratectl inventory load` again", err)
	case errors.As(err, &older):
		return cli.Reword(err, "%v (migratectl inventory load --replace-newer)", err)
	case errors.As(err, &bucket):
		return cli.Reword(err, "inventory %s is a report of bucket %q, but this migration's bucket is %q (--bucket, KEYMIGRATE_BUCKET): "+
			"give the report of an inventory configured on %q (its reports are under …/%s/<configuration-ID>/), or point --bucket at %q if that is the bucket to migrate",
			bucket.Location, bucket.ReportBucket, bucket.MigrationBucket, bucket.MigrationBucket, bucket.MigrationBucket, bucket.ReportBucket)
	}
	return err
}
