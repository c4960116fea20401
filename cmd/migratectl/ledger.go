package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) ledgerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Maintain the ledger itself (compact)",
	}
	cmd.AddCommand(a.ledgerCompactCmd())
	return cmd
}

func (a *app) ledgerCompactCmd() *cobra.Command {
	var (
		olderThan time.Duration
		yes       bool
		batch     int
		workers   int
		jsonOut   bool
	)
	cmd := &cobra.Command{
		Use:   "compact",
		Short: "Fold the records of photos cleaned and past the rollback window into audit rows (dry run unless --yes)",
		Long: `compact shrinks the ledger of photos that cleanup finished (state cleaned: every
legacy object deleted) more than --older-than ago: their object moves, one
indexed row per object, become one audit row per photo (kind, old and new key,
size, ETags, checksum, verification and times, packed as deflated JSON), and
their ledger row drops its last error and the old keys the audit row holds. What the audit report and verify read
stays: 'migratectl report' prints compacted photos as before, and verify still
knows which legacy keys cleanup deleted. What goes is rollback: a compacted
photo can no longer be rolled back by keymigrate. --older-than is that promise,
the rollback window (default 30 days after cleanup).

Without --yes it only counts what it would compact. It works in batches of
--batch photos, one transaction each, --workers of them at once on disjoint
batches, and can be stopped and run again at any time (a photo a rollback
holds at that moment is left for the next run). Run VACUUM (autovacuum) afterwards to reuse the space, or pg_repack /
VACUUM FULL in a maintenance window to give it back to the filesystem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderThan < 0 {
				return errors.New("--older-than must not be negative")
			}
			if batch < 1 {
				return errors.New("--batch must be at least 1")
			}
			if workers < 1 {
				return errors.New("--workers must be at least 1")
			}
			return a.run(connect.Options{Need: config.Need{DB: true}, MaxConns: workers + 1, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, log *zap.Logger) error {
				cutoff := time.Now().Add(-olderThan)
				photos, objects, err := deps.Store.AuditCountCompactable(ctx, cutoff)
				if err != nil {
					return err
				}
				out := struct {
					DryRun   bool   `json:"dry_run"`
					Cutoff   string `json:"cleaned_before"`
					Photos   int64  `json:"photos"`
					Objects  int64  `json:"object_moves"`
					Batches  int    `json:"batches,omitempty"`
					Finished bool   `json:"finished"`
				}{DryRun: !yes, Cutoff: cutoff.UTC().Format(time.RFC3339), Photos: photos, Objects: objects}
				if yes {
					res, err := cleanup.Compact(ctx, deps.Store, cutoff, batch, workers)
					if err != nil {
						return err
					}
					out.Photos, out.Objects, out.Batches, out.Finished = res.Photos, res.ObjectMoves, res.Batches, true
				}
				if jsonOut {
					return printJSON(out)
				}
				if !yes {
					fmt.Printf("dry run: would compact %d photos cleaned before %s (%d object moves into audit rows); --yes to do it\n", out.Photos, out.Cutoff, out.Objects)
					return nil
				}
				fmt.Printf("compacted %d photos cleaned before %s: %d object moves folded into audit rows, in %d batches\n", out.Photos, out.Cutoff, out.Objects, out.Batches)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.DurationVar(&olderThan, "older-than", 30*24*time.Hour, "compact photos cleaned at least this long ago: the rollback window")
	f.BoolVar(&yes, "yes", false, "compact (without it: a dry run that only counts)")
	f.IntVar(&batch, "batch", 500, "photos per transaction")
	f.IntVar(&workers, "workers", 4, "transactions at once, each on its own batch (a connection each)")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}
