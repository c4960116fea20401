package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/pipeline/rescue"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
	"github.com/keymigrate/keymigrate/worker"
)

func (a *app) sweepCmd() *cobra.Command {
	var o rescue.Options
	var controlInterval time.Duration
	cmd := &cobra.Command{
		Use:   "sweep",
		Short: "One pass of the lost-message sweeper (for a fleet that scales to zero)",
		Long: `sweep runs one pass of the sweeper every worker runs each --sweep-interval:
a photo the ledger has had enqueued (or in progress with no live worker) for
longer than --sweep-after, while the main queue has held no message at all for
--sweep-after, lost its message (an SQS outage, a purged or recreated queue); it
is enqueued again. While the queue holds any message (visible, in flight or
delayed) the pass does nothing: a photo waiting behind a backlog is not lost.

Workers sweep only while they run. Under KEDA the fleet scales to zero once
the queue is empty, so nothing would sweep: deploy/k8s runs this command as a
CronJob (docs/kubernetes.md). The queue's emptiness is recorded in the ledger,
so the first pass after the queue empties only starts the clock: a lost message
is found within --sweep-after plus one schedule interval (plus the time the
queue takes to empty).

Give --sweep-after and --control-interval the values the workers use (the same
KEYMIGRATE_SWEEP_AFTER and KEYMIGRATE_CONTROL_INTERVAL): a worker whose
heartbeat is newer than 3 control intervals still holds its photos.`,
		Example: "  migratectl sweep\n  migratectl sweep --sweep-after 10m --limit 1000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.After <= 0 || controlInterval <= 0 || o.Limit <= 0 {
				return fmt.Errorf("--sweep-after (%s), --control-interval (%s) and --limit (%d) must be positive", o.After, controlInterval, o.Limit)
			}
			o.Live = rescue.LiveWindow(controlInterval)
			return a.run(connect.Options{Need: config.Need{DB: true, Queue: true}, MaxConns: 2, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				r, err := rescue.SweepReport(ctx, deps.Store, deps.Queue, o)
				if err != nil {
					return fmt.Errorf("sweep: %w", err)
				}
				printSweep(r, o.After)
				return nil
			})
		},
	}
	w := worker.DefaultConfig()
	b := config.NewBinder(cmd.Flags())
	b.Duration(&o.After, "sweep-after", "KEYMIGRATE_SWEEP_AFTER", w.SweepAfter, "a photo enqueued (or in progress with no live worker) this long while the queue holds no message is enqueued again (the workers' value)")
	b.Duration(&controlInterval, "control-interval", "KEYMIGRATE_CONTROL_INTERVAL", w.ControlInterval, "the workers' --control-interval: a worker that beat within 3 of them still holds its photos")
	b.Int(&o.Limit, "limit", "KEYMIGRATE_SWEEP_LIMIT", rescue.DefaultLimit, "photos enqueued again by this pass at most")
	cmd.PreRunE = func(*cobra.Command, []string) error { return b.Err() }
	return cmd
}

func printSweep(r rescue.Result, after time.Duration) {
	switch {
	case r.Depth.Total() > 0:
		fmt.Printf("sweep: the queue holds %d messages (%d visible, %d in flight, %d delayed): nothing is lost while it does; nothing enqueued\n",
			r.Depth.Total(), r.Depth.Visible, r.Depth.InFlight, r.Depth.Delayed)
	case time.Since(r.EmptySince) < after:
		fmt.Printf("sweep: the queue has been empty since %s (%s), less than --sweep-after %s: nothing enqueued yet (a later pass acts)\n",
			r.EmptySince.UTC().Format(time.RFC3339), time.Since(r.EmptySince).Round(time.Second), after)
	case r.Enqueued == 0:
		fmt.Printf("sweep: the queue has been empty since %s; no photo has waited longer than %s without a message: nothing enqueued\n",
			r.EmptySince.UTC().Format(time.RFC3339), after)
	default:
		fmt.Printf("sweep: enqueued again %d photos whose messages were lost (the queue had been empty since %s)\n",
			r.Enqueued, r.EmptySince.UTC().Format(time.RFC3339))
	}
}
