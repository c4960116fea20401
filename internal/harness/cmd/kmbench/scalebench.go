package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/keymigrate/keymigrate/internal/harness/scalebench"
	"github.com/keymigrate/keymigrate/internal/harness/synths3"
)

// scaleBenchCommand is `kmbench scale-bench` (make scale-bench): the
// operator phases on 10^7 photos loaded by SQL beside a synthetic S3
// endpoint (docs/scale.md).
func scaleBenchCommand() *cobra.Command {
	cfg := scalebench.Config{AdminURL: os.Getenv("KEYMIGRATE_TEST_DATABASE_URL"), Progress: os.Stderr}
	var idType, jsonFile string
	target := scalebench.DefaultTarget
	cmd := &cobra.Command{
		Use:   "scale-bench",
		Short: "plan, status, verify, cleanup and ledger compact on photos loaded by SQL beside a synthetic S3 endpoint: requests, Postgres work, RSS and time per 10^6",
		Args:  cobra.NoArgs,
		// It needs only Postgres (its S3 endpoint is its own).
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.IDType = synths3.IDType(idType)
			if cfg.IDType != synths3.IDUUID && cfg.IDType != synths3.IDBigint {
				return fmt.Errorf("--id-type %q: uuid or bigint", idType)
			}
			if cfg.AdminURL == "" || cfg.Migratectl == "" {
				return fmt.Errorf("--admin-database-url and --migratectl are required (deploy/local/bench.sh scale-bench sets both)")
			}
			ms, err := scalebench.Run(cmd.Context(), cfg)
			scalebench.WriteTable(os.Stdout, ms)
			scalebench.WriteProjection(os.Stdout, ms, target)
			if jsonFile != "" && len(ms) > 0 {
				b, _ := json.MarshalIndent(ms, "", "  ")
				if werr := os.WriteFile(jsonFile, b, 0o644); werr != nil {
					return werr
				}
				fmt.Fprintf(os.Stderr, "scale-bench: figures written to %s\n", jsonFile)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.AdminURL, "admin-database-url", cfg.AdminURL, "a database on the Postgres server where each stage creates its own (default $KEYMIGRATE_TEST_DATABASE_URL)")
	f.StringVar(&cfg.Migratectl, "migratectl", "", "the built migratectl binary the phases run")
	f.Int64Var(&cfg.Photos, "photos", 10_000_000, "photos loaded (about 3.4 legacy objects each)")
	f.StringVar(&idType, "id-type", string(synths3.IDUUID), "photos.id type: uuid or bigint")
	f.IntSliceVar(&cfg.Shards, "shards", []int{1, 4}, "shard counts verify and cleanup run with, each measured")
	f.StringSliceVar(&cfg.Stages, "stages", []string{"legacy", "finished"}, "legacy (plan) and finished (status, verify, cleanup, compact)")
	f.BoolVar(&cfg.SkipDryRun, "skip-dry-run", false, "leave out the cleanup dry runs")
	f.BoolVar(&cfg.Keep, "keep", false, "leave the loaded databases (and inventory report) in place")
	f.IntVar(&cfg.Sample, "sample", 0, "run verify and cleanup without a report over 1/N of the ledger only (--shard), on the whole loaded tables: per-10^6 figures at 10^7 rows without hours of HEADs (0: the whole ledger)")
	f.BoolVar(&cfg.Inventory, "inventory", false, "write an S3 Inventory report of the synthetic bucket after the load and add plan --inventory, inventory load, verify --inventory (whole ledger) and cleanup --dry-run --inventory")
	f.BoolVar(&cfg.SkipListing, "skip-listing", false, "leave out plan's listing of the legacy prefixes (plan --inventory still runs with --inventory)")
	f.StringSliceVar(&cfg.Only, "only", nil, "run only the phases whose name starts with one of these (status, verify, cleanup --dry-run, ledger compact, ...)")
	f.StringVar(&cfg.PGOptions, "pg-options", "", "Postgres settings for the phases' sessions, e.g. '-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=200ms' to log slow statements' plans")
	f.DurationVar(&cfg.TimeLimit, "time-limit", 0, "stop every phase after this long (SIGTERM): a window of phases too long to run whole, for their memory over time (RSS by quarter); per-10^6 figures of a stopped phase are not given (0: run each phase to its end)")
	f.StringVar(&cfg.ProfileDir, "profile-dir", "", "write a Go CPU profile of every migratectl process here (phase-shard.cpu.prof), and its heap near its peak (phase-shard.heap.prof)")
	f.StringVar(&cfg.TempDir, "temp-dir", "", "where the inventory report is written (default the system's temporary directory)")
	f.StringVar(&jsonFile, "json", "", "also write the figures as JSON to this file")
	f.IntVar(&target.Machines, "project-machines", target.Machines, "machines the projection to 10^9 photos runs each phase on")
	f.DurationVar(&target.Latency, "project-latency", target.Latency, "S3 request latency the projection assumes")
	f.IntVar(&target.InFlight, "project-in-flight", target.InFlight, "S3 requests in flight per machine the projection assumes")
	return cmd
}
