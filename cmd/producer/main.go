// Command producer enqueues one message per legacy photo, resumably.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
	"github.com/keymigrate/keymigrate/producer"
)

func main() { cli.Execute(newCommand()) }

// longHelp is the producer's --help.
const longHelp = `producer scans the photos table in primary-key order for rows with any key
column outside users/ (archived rows excepted) and sends one message per photo
to the main queue, 10 per SendMessageBatch call, retrying only failed entries.

Each photo is recorded as enqueued in the ledger, and the run's checkpoint is
advanced after every group of batches: stopping the producer at any point and
running it again resumes the same run (the newest unfinished one, or --run-id)
without resending what was already sent. Photos the ledger records as failed
are skipped unless --retry-failed is given.

Staged rollout: --owner, --photos-from, --sample and --limit enqueue a subset
(the conditions combine with AND), recorded on the run as its selection; a run
is only resumed with the selection it started with. A later, wider run skips
what earlier runs migrated (it only finds rows still referencing legacy keys).
  --owner ID            photos of this owner (repeatable)
  --photos-from FILE    photo ids, one per line, or a CSV with a photo_id (or id)
                        column; the whole file is checked first, and one
                        malformed line refuses it with every bad line listed
  --sample PERCENT      a deterministic sample: a photo is in it when the first
                        4 bytes of MD5(photo id), big-endian, modulo 10,000 are
                        below PERCENT×100; so the 10% sample contains the 1% one
  --limit N             stop once the run has enqueued N photos

Throughput: the next page is read while the current groups are sent;
--in-flight groups of --group-size photos are recorded and sent at once, with
--send-concurrency SendMessageBatch calls, and the checkpoint advances in order
behind them. SIGINT/SIGTERM stop reading and let the groups in hand finish
(nothing is resent on the next start); a producer killed outright resends at
most --in-flight groups.

Shards: --shard i/n runs producer i of n over its own range of photos.id (the
ranges are fixed from a sample of the table when the first shard joins the
run, so each holds about 1/n of the rows), with its own checkpoint: start n
producers with the same --run-id and --shard 0/n … n-1/n; each resumes its own
range; the run is finished when every shard is. Not with --photos-from or
--limit.`

// newCommand builds the producer command: its help, its flags and what it
// runs.
func newCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "producer",
		Short: "Enqueue one message per photo that still references a legacy key",
		Long:  longHelp,
		Args:  cobra.NoArgs,
	}
	o := bindFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return o.run(cmd) }
	return cmd
}

// options are the producer's flags.
type options struct {
	svc        *cli.Service
	cfg        producer.Config
	sel        ledger.Selection
	photosFrom string
	shard      string
	jsonOut    bool
}

// bindFlags registers the producer's flags on cmd.
func bindFlags(cmd *cobra.Command) *options {
	o := &options{svc: cli.NewService(cmd, "address of the /healthz, /readyz and /metrics server while the producer runs, e.g. :9090 (empty: none)")}
	b, cfg, sel := o.svc.Binder, &o.cfg, &o.sel
	b.String(&cfg.RunID, "run-id", "KEYMIGRATE_RUN_ID", "", "run to resume or create (default: resume the newest unfinished run, else start a new one)")
	b.Int(&cfg.PageSize, "page-size", "KEYMIGRATE_PAGE_SIZE", producer.DefaultPageSize, "rows read per query")
	b.Int(&cfg.GroupSize, "group-size", "KEYMIGRATE_GROUP_SIZE", producer.DefaultGroupSize, "photos per checkpoint (a multiple of 10)")
	b.Int(&cfg.InFlight, "in-flight", "KEYMIGRATE_IN_FLIGHT", producer.DefaultInFlight, "groups recorded and being sent at once (a producer killed outright resends at most these)")
	b.Int(&cfg.SendConcurrency, "send-concurrency", "KEYMIGRATE_SEND_CONCURRENCY", producer.DefaultSendConcurrency, "SendMessageBatch calls at once")
	b.String(&o.shard, "shard", "KEYMIGRATE_SHARD", "", "i/n: be producer i of n producers of one run, each over its own range of photos.id with its own checkpoint (give them the same --run-id)")
	cmd.Flags().BoolVar(&cfg.NewRun, "new-run", false, "start a new run even if an unfinished one exists (rescans every legacy photo)")
	cmd.Flags().BoolVar(&cfg.DryRun, "dry-run", false, "send and record nothing; print what would be enqueued")
	cmd.Flags().BoolVar(&cfg.RetryFailed, "retry-failed", false, "also enqueue photos the ledger records as failed")
	cmd.Flags().BoolVar(&o.jsonOut, "json", false, "print the summary as JSON")
	cmd.Flags().StringArrayVar(&sel.Owners, "owner", nil, "enqueue only photos of this owner id (repeatable)")
	cmd.Flags().StringVar(&o.photosFrom, "photos-from", "", "enqueue only the photos listed in this file (ids one per line, or CSV with a photo_id column)")
	cmd.Flags().Int64Var(&sel.Limit, "limit", 0, "stop once the run has enqueued this many photos (0: no limit)")
	cmd.Flags().Float64Var(&sel.SamplePercent, "sample", 0, "enqueue only a deterministic sample of this percentage of photos (0.01 to 100; the 1% sample is inside the 10% one)")
	return o
}

// run runs the producer once with the flags given and prints its summary.
func (o *options) run(cmd *cobra.Command) error {
	cfg, sel := &o.cfg, &o.sel
	ctx, run, err := o.svc.Start(connect.Options{
		Component: "producer",
		Need:      config.Need{DB: true, Queue: !cfg.DryRun}, CheckSchema: true, MaxConns: 4,
	})
	if err != nil {
		return err
	}
	defer run.Close()
	cfg.Metrics = run.Metrics
	cfg.Out = os.Stdout
	if o.photosFrom != "" {
		sel.PhotosFrom = &ledger.PhotoList{Path: o.photosFrom}
	}
	if cmd.Flags().Changed("sample") && sel.SamplePercent == 0 {
		return fmt.Errorf("--sample 0 selects nothing: give a percentage from 0.01 to 100")
	}
	cfg.Selection = sel
	if o.shard != "" {
		if _, err := fmt.Sscanf(o.shard, "%d/%d", &cfg.Shard, &cfg.Shards); err != nil || cfg.Shards < 1 || cfg.Shard < 0 || cfg.Shard >= cfg.Shards || fmt.Sprintf("%d/%d", cfg.Shard, cfg.Shards) != o.shard {
			return fmt.Errorf("--shard %q: give i/n with 0 <= i < n, e.g. --shard 0/4", o.shard)
		}
	}
	s, runErr := producer.New(run.Deps.Store, run.Deps.Queue, run.Log, *cfg).Run(ctx)
	runErr = inFlagTerms(runErr)
	runErr = ledgerInFlagTerms(runErr, sel)
	if runErr != nil && s.RunID == "" && s.Found == 0 {
		return runErr // refused before a run started: nothing to summarise
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
	} else {
		printSummary(s)
	}
	if runErr != nil && ctx.Err() != nil {
		return fmt.Errorf("interrupted; run the producer again to resume run %s from its checkpoint", s.RunID)
	}
	return runErr
}

// printSummary prints what the producer did, for people (--json prints it for
// programs).
func printSummary(s producer.Summary) {
	verb := "enqueued"
	if s.DryRun {
		verb = "would enqueue"
		fmt.Println("dry run: nothing was sent or recorded")
	} else {
		how := "new run"
		if s.Resumed {
			how = "resumed run"
		}
		fmt.Printf("%s %s\n", how, s.RunID)
	}
	if s.Selection != nil {
		fmt.Printf("selection: %s\n", s.Selection)
	}
	if s.Shard != "" {
		state := "the run goes on in other shards"
		if s.RunFinished {
			state = "the run is finished: every shard is done"
		}
		fmt.Printf("shard %s, ids %s; %s\n", s.Shard, s.ShardRange, state)
	}
	fmt.Printf("found %d legacy photos; %s %d (%d without an owner, to be archived); skipped %d (failed earlier: use --retry-failed)\n",
		s.Found, verb, s.Enqueued, s.Ownerless, s.Skipped)
	if s.Resent > 0 {
		fmt.Printf("sent again %d photos an earlier invocation recorded that the application has since deleted, archived or rewritten (workers settle them)\n", s.Resent)
	}
	if s.LimitReached {
		fmt.Printf("stopped at the run's limit of %d photos\n", s.Selection.Limit)
	}
}
