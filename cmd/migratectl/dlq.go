package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/dlq"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) dlqCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Review the dead-letter queue and move its messages back",
	}
	cmd.AddCommand(a.dlqListCmd(), a.dlqRedriveCmd())
	return cmd
}

func (a *app) dlqListCmd() *cobra.Command {
	var reason string
	var maxReceive, limit int
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "What is in the DLQ and why, grouped by reason, with photo ids",
		Long: `dlq list groups the dead-lettered messages by reason, with counts, photo ids and
the latest error, from the ledger: it never receives from the queue, so looking
consumes nothing and burns no receive count. Messages the queue's redrive policy
moved after --max-receive-count failed deliveries carry no reason; they are
listed as retries_exhausted. The DLQ's own depth is shown beside the count the
ledger explains.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true, DLQ: true}, MaxConns: 2}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				l, err := dlq.List(ctx, deps.Store, deps.DLQ, reason, maxReceive, limit)
				if err != nil {
					return err
				}
				if jsonOut {
					return printJSON(l)
				}
				if l.DepthError != "" {
					fmt.Printf("dead-letter queue: depth unavailable (%s); the ledger explains %d messages\n", l.DepthError, l.Accounted)
				} else {
					fmt.Printf("dead-letter queue: %d messages (%d visible, %d in flight); the ledger explains %d\n",
						l.Depth.Total(), l.Depth.Visible, l.Depth.InFlight, l.Accounted)
				}
				if len(l.Groups) == 0 {
					fmt.Println("no dead-lettered photos recorded")
				}
				for _, g := range l.Groups {
					fmt.Printf("\n%s: %d messages, %d photos\n  last error: %s\n", g.Reason, g.Messages, g.Photos, g.LastError)
					if len(g.PhotoIDs) > 0 {
						fmt.Printf("  photos: %s\n", strings.Join(g.PhotoIDs, " "))
					}
					if len(g.MessageIDs) > 0 {
						fmt.Printf("  messages without a photo: %s\n", strings.Join(g.MessageIDs, " "))
					}
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&reason, "reason", "", "only this reason")
	f.IntVar(&maxReceive, "max-receive-count", queue.DefaultMaxReceiveCount, "the main queue's maxReceiveCount, to recognise exhausted retries")
	f.IntVar(&limit, "limit", 50, "photo ids listed per reason")
	f.BoolVar(&jsonOut, "json", false, "print as JSON")
	return cmd
}

func (a *app) dlqRedriveCmd() *cobra.Command {
	var o dlq.Options
	var dryRun, jsonOut bool
	cmd := &cobra.Command{
		Use:   "redrive",
		Short: "Move dead-lettered messages back to the main queue: all, one reason, or at most N",
		Long: `dlq redrive moves messages from the DLQ back to the main queue, where workers
retry them (fix the cause first: dlq list says what it was).

Without --reason or --max it asks SQS to move the whole queue
(StartMessageMoveTask) and waits for the task; where the server lacks that
(fauxqs), or with a filter, it moves one batch at a time: receive, send to the
main queue, delete from the DLQ. An interruption then leaves a message in both
queues at worst (workers are idempotent), never in neither; messages that do not
match the filter are hidden for --hold and handed back at the end.

Redriven photos are marked enqueued again in the ledger.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true, Queue: true, DLQ: true}, MaxConns: 2}, func(ctx context.Context, deps *connect.Deps, log *zap.Logger) error {
				if dryRun {
					l, err := dlq.List(ctx, deps.Store, deps.DLQ, o.Reason, 5, 20)
					if err != nil {
						return err
					}
					n := l.Depth.Total()
					if o.Reason != "" {
						n = l.Accounted
					}
					if o.Max > 0 && int64(o.Max) < n {
						n = int64(o.Max)
					}
					fmt.Printf("dry run: would move about %d of the DLQ's %d messages to the main queue\n", n, l.Depth.Total())
					for _, g := range l.Groups {
						fmt.Printf("  %s: %d\n", g.Reason, g.Messages)
					}
					return nil
				}
				res, err := dlq.Redrive(ctx, deps.Store, deps.DLQ, deps.Queue, log, o)
				if jsonOut {
					_ = printJSON(res)
				} else {
					fmt.Printf("moved %d messages back to the main queue (%s)", res.Moved, res.Method)
					if res.Released > 0 {
						fmt.Printf("; %d that did not match were left in the DLQ", res.Released)
					}
					fmt.Println()
					if res.StillHidden > 0 {
						fmt.Printf("%d DLQ messages are hidden right now (an interrupted redrive holds them until its --hold ends, or another consumer has them): run the redrive again later\n", res.StillHidden)
					}
				}
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Reason, "reason", "", "only messages dead-lettered for this reason")
	f.IntVar(&o.Max, "max", 0, "at most this many messages (0: all)")
	f.DurationVar(&o.Hold, "hold", 5*time.Minute, "how long non-matching messages stay hidden while a filtered redrive runs")
	f.BoolVar(&dryRun, "dry-run", false, "show what would move; move nothing")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}
