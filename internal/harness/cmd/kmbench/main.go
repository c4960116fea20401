// Command kmbench runs keymigrate's benchmarks on the local stack (not part
// of the tests, and not shipped: it starts a fault proxy, a test tool). Run it
// through `make bench`, `make scale-latency`, `make bench-throttle` and
// `make staged-bench`
// (deploy/local/bench.sh), which
// build the binaries and s5cmd and point it at the stack; docs/performance.md
// explains the output.
package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keymigrate/keymigrate/internal/harness/bench"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
)

func main() {
	var (
		cfg                         bench.Config
		binDir, s3PIDFile, adminURL string
		workerArgs                  string
		profile                     bool
	)
	root := &cobra.Command{
		Use:   "kmbench",
		Short: "keymigrate's benchmarks on the local stack (see docs/performance.md)",
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			stack, err := bench.OpenStack(cmd.Context(), adminURL, os.Getenv("AWS_ENDPOINT_URL_S3"))
			if err != nil {
				return err
			}
			cfg.Stack = stack
			cfg.WorkerBin = filepath.Join(binDir, "worker")
			cfg.Progress = os.Stderr
			if s3PIDFile != "" {
				if b, err := os.ReadFile(s3PIDFile); err == nil {
					cfg.S3PID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
				}
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&binDir, "bin-dir", "bin", "directory of the built worker binary")
	pf.StringVar(&cfg.LogDir, "log-dir", filepath.Join(".stack", "bench-"+time.Now().Format("20060102-150405")), "directory for the processes' logs")
	pf.StringVar(&adminURL, "admin-database-url", os.Getenv("KEYMIGRATE_TEST_DATABASE_URL"), "a database on the Postgres server where each run creates its own (default $KEYMIGRATE_TEST_DATABASE_URL)")
	pf.StringVar(&s3PIDFile, "s3-pid-file", "", "PID file of the S3 server, to report its CPU time")
	pf.IntVar(&cfg.Photos, "photos", 2000, "photos seeded into each run's backlog")
	pf.Uint64Var(&cfg.Seed, "seed", 7, "seed of the photos")
	pf.BoolVar(&cfg.Keep, "keep", false, "leave each run's database, bucket and queues in place")
	pf.StringVar(&workerArgs, "worker-args", "", "extra worker flags for every run, space-separated")
	pf.BoolVar(&profile, "profile", false, "each worker writes a Go CPU profile beside its log in --log-dir (<run>-worker-N.cpu.prof)")

	var spec bench.FleetSpec
	benchCmd := &cobra.Command{
		Use:   "bench",
		Short: "the fleet beside a raw CopyObject loop and s5cmd, requests per object, and the fleet without the source recheck",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec.Args, spec.Profile = strings.Fields(workerArgs), profile
			return bench.Bench(cmd.Context(), cfg, spec, os.Stdout)
		},
	}
	benchCmd.Flags().IntVar(&spec.Workers, "workers", 2, "worker processes")
	benchCmd.Flags().IntVar(&spec.Concurrency, "concurrency", 16, "each worker's --concurrency; the peers run workers x concurrency requests at once")
	benchCmd.Flags().StringVar(&cfg.S5cmdBin, "s5cmd", "", "the s5cmd binary (deploy/local/stack.sh s5cmd prints it)")

	var scale bench.ScaleSpec
	scaleCmd := &cobra.Command{
		Use:   "scale-latency",
		Short: "with a fixed latency on every S3 request: one worker at growing --concurrency, then 1, 2, 4 workers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scale.Args, scale.Profile = strings.Fields(workerArgs), profile
			return bench.ScaleLatency(cmd.Context(), cfg, scale, os.Stdout)
		},
	}
	sf := scaleCmd.Flags()
	sf.DurationVar(&scale.Latency, "latency", 30*time.Millisecond, "latency the proxy adds to every S3 request")
	sf.IntSliceVar(&scale.Concurrency, "concurrency", []int{16, 64, 256}, "--concurrency of the one-worker runs")
	sf.IntSliceVar(&scale.Workers, "workers", []int{1, 2, 4}, "worker processes of the fleet runs")
	sf.IntVar(&scale.FleetConcurrency, "fleet-concurrency", 64, "each worker's --concurrency in the fleet runs")
	sf.BoolVar(&scale.Enforce, "enforce-conditional-copy", false, "enforce If-None-Match on CopyObject in front of the server, as S3 does (versitygw does not): the worker takes S3's path")

	var thr bench.ThrottleSpec
	throttleCmd := &cobra.Command{
		Use:   "throttle",
		Short: "the fleet with no faults, with a share of requests answered SlowDown, the same share answered 500, and under a hard limit that is then lifted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			thr.Fleet.Args, thr.Fleet.Profile = strings.Fields(workerArgs), profile
			return bench.Throttle(cmd.Context(), cfg, thr, os.Stdout)
		},
	}
	tf := throttleCmd.Flags()
	tf.IntVar(&thr.Fleet.Workers, "workers", 2, "worker processes")
	tf.IntVar(&thr.Fleet.Concurrency, "concurrency", 16, "each worker's --concurrency")
	tf.StringSliceVar(&thr.Scenarios, "scenarios", bench.Scenarios, "scenarios to run, of "+strings.Join(bench.Scenarios, ","))
	tf.Float64Var(&thr.FaultRate, "fault-rate", 0.05, "share of requests answered 503 SlowDown (slowdown) and 500 InternalError (internal)")
	tf.Float64Var(&thr.Limit, "limit", 0, "the hard limit N in requests/s (limit); 0: half the requests/s the proxy let through with no faults")
	tf.DurationVar(&thr.Lead, "limit-after", 10*time.Second, "how long after the workers start the limit begins")
	tf.DurationVar(&thr.Window, "limit-window", 60*time.Second, "how long the limit holds before it is lifted")
	tf.IntVar(&thr.LimitPhotos, "limit-photos", 0, "photos in the limit scenario's backlog; 0: sized from the unthrottled run to last --limit-tail past the window")
	tf.DurationVar(&thr.Tail, "limit-tail", 20*time.Second, "how long the limit scenario's backlog should last after the limit lifts, when sized automatically")

	var staged bench.StagedSpec
	stagedCmd := &cobra.Command{
		Use:   "staged",
		Short: "a staged rollout: stage 1 a sample, the plan calibrated from its ledger, stage 2 the rest; the plan's duration against stage 2's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			staged.Fleet.Args, staged.Fleet.Profile = strings.Fields(workerArgs), profile
			rep, err := bench.StagedRun(cmd.Context(), cfg, staged)
			if err != nil {
				return err
			}
			rep.Write(os.Stdout)
			return nil
		},
	}
	stf := stagedCmd.Flags()
	stf.IntVar(&staged.Fleet.Workers, "workers", 2, "worker processes of each stage (and the plan's --workers)")
	stf.IntVar(&staged.Fleet.Concurrency, "concurrency", 16, "each worker's --concurrency (and the plan's)")
	stf.Float64Var(&staged.SamplePercent, "sample", 20, "stage 1: the producer's --sample, a percentage of the photos")
	stf.IntVar(&staged.Calibrate, "calibrate", 20, "before stage 1, a plan with --calibrate N (a scratch copy of N photos; 0: none)")
	stf.StringVar(&staged.Migratectl, "migratectl", filepath.Join("bin", "migratectl"), "the built migratectl binary the plans are made with")

	root.AddCommand(benchCmd, scaleCmd, throttleCmd, stagedCmd, scaleBenchCommand())
	ctx, stop := cli.SignalContext()
	defer stop()
	root.SetContext(ctx)
	cli.Execute(root)
}
