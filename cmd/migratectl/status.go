package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/status"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) statusCmd() *cobra.Command {
	var (
		watch, untilIdle, jsonOut bool
		census                    bool
		interval, window          time.Duration
		runID                     string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show progress: photos by state, queue depths, rate and ETA",
		Long: `status counts photos by state (pending = legacy rows not yet enqueued; then
enqueued, in progress, migrated, archived, failed, rolled back, cleaned), reads
the main queue's and the DLQ's depth, and estimates the rate over --window and
the time left.

--watch refreshes every --interval: a live progress bar on a terminal, one
plain line per refresh otherwise (logs, CI). --until-idle ends the watch once
nothing is pending, in progress or queued.

--run RUN scopes the counts, rate and ETA to the photos the ledger attributes
to that run (a photo belongs to the last run that enqueued it; migratectl runs
lists them); the queue depths are still the whole queue's.

A snapshot reads the ledger's counters, never its rows: it costs the same at
a thousand photos and at a billion, so --watch can run beside the fleet.
Pending photos come from the census: the last count of legacy rows the ledger
had not recorded, less the photos it recorded since. A producer run over every
photo records one when it finishes (none pending); --census counts now, with
one pass over the photos table (minutes at a billion rows), before the
snapshot. Without a census, pending shows as unknown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true, Queue: a.common.QueueURL != "", DLQ: a.common.DLQURL != ""}, MaxConns: 2}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				src := status.Source{Store: deps.Store, Queue: deps.Queue, DLQ: deps.DLQ, RunID: runID}
				if census {
					fmt.Fprintln(os.Stderr, "status: counting legacy photos not yet enqueued (one pass over photos)…")
					c, err := deps.Store.CensusTake(ctx)
					if err != nil {
						return err
					}
					fmt.Fprintf(os.Stderr, "status: %d legacy photos not yet enqueued\n", c.Pending)
				}
				if !watch {
					s, err := status.Take(ctx, src, window)
					if err != nil {
						return err
					}
					if jsonOut {
						return printJSON(s)
					}
					printStatus(s)
					return nil
				}
				tty := isatty.IsTerminal(os.Stdout.Fd())
				var bar *progressbar.ProgressBar
				t := time.NewTicker(interval)
				defer t.Stop()
				for {
					s, err := status.Take(ctx, src, window)
					if err != nil {
						if ctx.Err() != nil {
							return nil
						}
						return err
					}
					switch {
					case jsonOut:
						_ = printJSON(s)
					case tty:
						if bar == nil {
							bar = progressbar.NewOptions64(max(s.Total, 1), progressbar.OptionSetWriter(os.Stdout),
								progressbar.OptionShowCount(), progressbar.OptionSetWidth(30), progressbar.OptionFullWidth(),
								progressbar.OptionSetPredictTime(false), progressbar.OptionSetRenderBlankState(true))
						}
						bar.ChangeMax64(max(s.Total, 1))
						bar.Describe(shortLine(s))
						_ = bar.Set64(s.Done)
					default:
						fmt.Println(plainLine(s))
					}
					if untilIdle && s.Idle() {
						if bar != nil {
							_ = bar.Finish()
							fmt.Println()
						}
						printStatus(s)
						return nil
					}
					select {
					case <-ctx.Done():
						return nil
					case <-t.C:
					}
				}
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&watch, "watch", false, "refresh until interrupted")
	f.BoolVar(&untilIdle, "until-idle", false, "with --watch: stop once nothing is pending, in progress or queued")
	f.BoolVar(&jsonOut, "json", false, "print as JSON")
	f.DurationVar(&interval, "interval", 2*time.Second, "refresh interval of --watch")
	f.DurationVar(&window, "window", time.Minute, "span the rate is measured over")
	f.StringVar(&runID, "run", "", "only the photos of this run (migratectl runs lists them)")
	f.BoolVar(&census, "census", false, "count the legacy photos not yet enqueued first (one pass over photos; see above)")
	return cmd
}

func eta(s status.Status) string {
	switch {
	case s.ETA == 0:
		return "done"
	case s.ETA < 0:
		return "unknown"
	}
	return s.ETA.Round(time.Second).String()
}

func shortLine(s status.Status) string {
	q := ""
	if s.Queue != nil {
		q = fmt.Sprintf(" queue %d+%d", s.Queue.Visible, s.Queue.InFlight)
	}
	if s.DLQ != nil {
		q += fmt.Sprintf(" dlq %d", s.DLQ.Total())
	}
	return fmt.Sprintf("%.0f photos/s ETA %s failed %d%s workers %d%s", s.Rate, eta(s), s.Failed, q, len(s.Workers), controlNote(s))
}

func controlNote(s status.Status) string {
	note := ""
	if s.Control.Paused {
		note += " PAUSED"
	}
	if s.Control.RateLimit != nil {
		note += fmt.Sprintf(" throttled to %g/s", *s.Control.RateLimit)
	}
	return note
}

func plainLine(s status.Status) string {
	pct := 100.0
	if s.Total > 0 {
		pct = float64(s.Done) * 100 / float64(s.Total)
	}
	parts := []string{s.At.Format(time.RFC3339), fmt.Sprintf("done %d/%d (%.1f%%)", s.Done, s.Total, pct)}
	for _, st := range status.States {
		parts = append(parts, fmt.Sprintf("%s=%d", st, s.States[st]))
	}
	parts = append(parts, shortLine(s))
	return strings.Join(parts, " ")
}

func printStatus(s status.Status) {
	if r := s.Run; r != nil {
		state := "unfinished"
		if r.FinishedAt != nil {
			state = "finished " + r.FinishedAt.UTC().Format(time.RFC3339)
		}
		fmt.Printf("run:    %s (%s, started %s, %s): %s; enqueued %d\n", r.ID, r.Kind, r.StartedAt.UTC().Format(time.RFC3339), state, r.Selection, r.Counts.Enqueued)
	}
	fmt.Printf("photos: %d in scope, %d done, %d failed, %d rows still reference legacy keys\n", s.Total, s.Done, s.Failed, s.Legacy)
	for _, st := range status.States {
		if st == status.Pending && s.Census == nil && s.Run == nil {
			fmt.Printf("  %-12s unknown: no census yet (migratectl status --census counts them)\n", st)
			continue
		}
		fmt.Printf("  %-12s %d\n", st, s.States[st])
	}
	if c := s.Census; c != nil {
		fmt.Printf("        pending: the census of %s (%s) less the photos recorded since\n", c.TakenAt.UTC().Format(time.RFC3339), c.Source)
	}
	switch {
	case s.Queue != nil:
		fmt.Printf("queue:  %d visible, %d in flight, %d delayed\n", s.Queue.Visible, s.Queue.InFlight, s.Queue.Delayed)
	case s.QueueError != "":
		fmt.Printf("queue:  unavailable (%s)\n", s.QueueError)
	}
	switch {
	case s.DLQ != nil:
		fmt.Printf("dlq:    %d messages\n", s.DLQ.Total())
	case s.DLQError != "":
		fmt.Printf("dlq:    unavailable (%s)\n", s.DLQError)
	}
	fmt.Printf("ledger: %d photos enqueued or in progress, %d of them in a worker's hands", s.Open, s.Held)
	if s.SinceProgress >= 0 {
		fmt.Printf("; the last photo finished %s ago", s.SinceProgress.Round(time.Second))
	}
	fmt.Println()
	if s.Unaccounted > 0 {
		fmt.Printf("        %d photos have no message the queue could be holding (lost messages?): the workers' sweeper (or migratectl sweep, the CronJob where the fleet scales to zero) enqueues them again once the queue stays empty\n", s.Unaccounted)
		for _, id := range s.UnfinishedRuns {
			fmt.Printf("        producer run %s did not finish: if its producer failed, rerun it (producer --run-id %s) to send what it recorded\n", id, id)
		}
	}
	if s.Stuck > 0 {
		fmt.Printf("        %d photos lost their message %d times; the sweeper gave up on them: look at their workers' logs, then producer --retry-failed or a new run\n", s.Stuck, ledger.MaxRescues)
	}
	if s.NotCarried > 0 {
		fmt.Printf("notice: %d moved objects had retention, a legal hold or ACL grants their copies do not carry: SELECT new_key, not_carried FROM keymigrate.object_moves WHERE not_carried IS NOT NULL\n", s.NotCarried)
	}
	fmt.Printf("rate:   %.1f photos/s over the last %s; ETA %s\n", s.Rate, s.Window, eta(s))
	ctl := "running"
	if s.Control.Paused {
		ctl = "PAUSED"
	}
	if s.Control.RateLimit != nil {
		ctl += fmt.Sprintf(", throttled to %g photos/s", *s.Control.RateLimit)
	}
	if s.Control.UpdatedBy != "" {
		ctl += fmt.Sprintf(" (set by %s at %s)", s.Control.UpdatedBy, s.Control.UpdatedAt.Format(time.RFC3339))
	}
	fmt.Printf("fleet:  %s; %d workers seen in the last 10s\n", ctl, len(s.Workers))
	for _, w := range s.Workers {
		if w.WaitingFor != "" {
			fmt.Printf("        worker %s takes no message: waiting for %s\n", w.WorkerID, w.WaitingFor)
		}
	}
	printVerifyShards(s.Verify)
}

// printVerifyShards shows each verify pass's shards: where each is, and its
// tally so far ('verify --report' prints the gate of a complete pass).
func printVerifyShards(shards []status.VerifyShard) {
	last := ""
	for _, v := range shards {
		if id := fmt.Sprintf("%s|%d", v.Scope, v.Shards); id != last {
			last = id
			fmt.Printf("verify: pass of %d shards (%s)\n", v.Shards, v.Scope)
		}
		state := "in phase " + v.Phase
		switch {
		case v.Done:
			state = "done"
		case v.Phase == "":
			state = "started"
		}
		fmt.Printf("        shard %d/%d %-15s %d rows, %d moved objects, %d legacy objects listed, %d problems (updated %s)\n",
			v.Shard, v.Shards, state, v.Rows, v.Objects, v.Listed, v.Problems, v.UpdatedAt.UTC().Format(time.RFC3339))
		if !v.Done {
			fmt.Printf("          %s\n", v.Lease)
		}
	}
}
