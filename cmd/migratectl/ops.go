package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/archived"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/pipeline/s3caps"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) archivedCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "archived", Short: "Photos set aside because they have no owner"}
	var output string
	report := &cobra.Command{
		Use:   "report",
		Short: "CSV of the archived photos without an owner, for manual review",
		Long: `archived report writes one CSV line per archived photo without an owner:
photo_id, status, each key with the size of its object (read from S3 now;
"missing" if absent), created_at and archived_at.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: 2}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				w := os.Stdout
				if output != "" && output != "-" {
					f, err := os.Create(output)
					if err != nil {
						return fmt.Errorf("create %s: %w", output, err)
					}
					defer f.Close()
					w = f
				}
				n, err := archived.Write(ctx, deps.Store, deps.Objects, w)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "archived report: %d photos\n", n)
				return nil
			})
		},
	}
	report.Flags().StringVarP(&output, "output", "o", "-", "file to write (- for standard output)")
	cmd.AddCommand(report, a.archivedAssignCmd(), a.archivedPurgeCmd())
	return cmd
}

func (a *app) rollbackCmd() *cobra.Command {
	var o rollback.Options
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Swap rows back to their pre-migration keys (and un-archive), by compare-and-swap",
		Long: `rollback puts photos back as they were before the migration, from the ledger:
migrated rows get their old key columns back, archived rows their old status.
A row the app changed since the migration touched it is reported and left
alone. Every legacy object a row will point at must exist: objects cleanup
already deleted are first copied back from their new key and verified.

A photo whose column object (original, restore, thumbnail) the application
rewrote since the migration, or one of whose objects a user deleted, is
refused: rolling it back would discard the newer bytes or bring the deleted
object back.

--delete-new also deletes the new copies afterwards, each only while it is
still the copy keymigrate made (conditional on its ETag) and its legacy object
exists; objects the application rewrote are kept and listed.

A rolled-back photo stays rolled back: messages of earlier runs (still queued,
or redriven from the DLQ) are skipped, and a worker that held the photo while
it was rolled back does not swap it. Only a new producer run migrates it again.
Rollback waits until the fleet holds no photo (pause it first: migratectl
pause); --wait sets how long, --force goes ahead anyway.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.PhotoID == "" && !o.All {
				return rollbackError(rollback.ErrNothingSelected)
			}
			if o.PhotoID != "" && o.All {
				return errors.New("give --photo or --all, not both")
			}
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: 4, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, log *zap.Logger) error {
				resolveCapabilities(ctx, deps, log)
				rep, err := rollback.Run(ctx, deps.Store, deps.Objects, o)
				if jsonOut {
					_ = printJSON(rep)
				} else if rep != nil {
					if rep.DryRun {
						fmt.Printf("dry run: would roll back %d photos\n", len(rep.WouldRollBack))
					} else {
						fmt.Printf("rolled back %d photos, un-archived %d; copied %d legacy objects back; deleted %d new copies\n",
							rep.RolledBack, rep.Unarchived, rep.Restored, rep.DeletedNew)
					}
					for _, r := range rep.Refused {
						fmt.Printf("  refused %s: %s\n", r.PhotoID, r.Reason)
					}
					if rep.Compacted > 0 {
						fmt.Printf("  left alone %d compacted photos (cleaned and past the rollback window: migratectl ledger compact)\n", rep.Compacted)
					}
				}
				if err == nil && rep != nil && len(rep.Refused) > 0 {
					return &cli.ExitError{Code: 2, Err: fmt.Errorf("%d photos were not rolled back (listed above)", len(rep.Refused))}
				}
				return rollbackError(err)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.PhotoID, "photo", "", "roll back this photo")
	f.BoolVar(&o.All, "all", false, "roll back every migrated, cleaned or archived photo")
	f.StringVar(&o.RunID, "run", "", "with --all: only photos of this producer run")
	f.BoolVar(&o.DeleteNew, "delete-new", false, "also delete the new copies keymigrate made (never the application's)")
	f.DurationVar(&o.Wait, "wait", 30*time.Second, "how long to wait for the workers to finish the photos they hold")
	f.BoolVar(&o.Force, "force", false, "roll back even while workers hold photos (their swaps re-check the ledger)")
	f.BoolVar(&o.DryRun, "dry-run", false, "list what would be rolled back; change nothing")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	return cmd
}

// rollbackError words rollback's errors in the command's flags.
func rollbackError(err error) error {
	switch {
	case errors.Is(err, rollback.ErrNothingSelected):
		return cli.Reword(err, "say which photos to roll back: --photo ID, or --all (optionally with --run)")
	case errors.Is(err, rollback.ErrFleetBusy):
		return cli.Reword(err, "%v; pause the fleet (migratectl pause) and run rollback again once they finished (--wait 1m waits), or pass --force (safe: a worker's swap re-checks the ledger and does not migrate a rolled-back photo again)", err)
	}
	return err
}

// resolveCapabilities applies what the fleet knows (or a probe finds) about
// the conditions the S3 server enforces: deletes are conditional on the ETag
// where it does. Without an answer every delete reads the object first.
func resolveCapabilities(ctx context.Context, deps *connect.Deps, log *zap.Logger) {
	c, err := s3caps.Resolve(ctx, deps.Store, deps.Objects, false)
	if err != nil {
		log.Warn("could not tell which conditions S3 enforces; every delete reads its object first", zap.Error(err))
		return
	}
	log.Debug("S3 capabilities", zap.Bool("conditional_delete", c.ConditionalDelete), zap.Bool("conditional_batch_delete", c.ConditionalBatchDelete))
}

func (a *app) archivedPurgeCmd() *cobra.Command {
	var o archived.PurgeOptions
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "purge --older-than DURATION [--yes]",
		Short: "Delete the legacy objects of photos archived longer than a retention period (dry run unless --yes)",
		Long: `archived purge is the plan's last step for ownerless photos nobody claimed in
manual review. For every photo the workers archived at least --older-than ago,
it deletes its legacy objects (those its row references, and its job's
metadata and animations), but only those no other row needs:
  - a row that references a legacy key of the same job and is not itself
    archived that long keeps every object of the job;
  - a migrated photo of the same job keeps each object it has no intact copy
    of its own of.
Orphans (restores no row references) are never deleted. Each deletion is
recorded in the ledger before it is made, and is conditional on the object's
ETag. The application's rows are the application's: purge prints the DELETE
statement for the application team to review and run, and runs nothing on
photos. Without --yes it only lists what it would delete. Interrupt it and run
it again to resume; a photo purged completely is not looked at again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.OlderThan <= 0 {
				return cli.Reword(archived.ErrNoRetention, "give --older-than (for example 2160h for 90 days): only photos archived at least that long ago are purged")
			}
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: 4, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, log *zap.Logger) error {
				resolveCapabilities(ctx, deps, log)
				rep, err := archived.Purge(ctx, deps.Store, deps.Objects, o)
				if rep == nil {
					return err
				}
				if jsonOut {
					_ = printJSON(rep)
					return err
				}
				verb := "deleted"
				if rep.DryRun {
					verb = "would delete"
				}
				fmt.Printf("photos archived before %s: %d looked at; %s %d legacy objects, %s\n", rep.Cutoff.Format(time.RFC3339), len(rep.Photos), verb, rep.Deleted, humanize.IBytes(uint64(rep.Bytes)))
				for _, p := range rep.Photos {
					for _, k := range p.Keys {
						fmt.Printf("  %s %s (photo %s)\n", verb, k, p.PhotoID)
					}
				}
				if len(rep.Kept) > 0 {
					fmt.Printf("kept %d:\n", len(rep.Kept))
					for _, k := range rep.Kept {
						fmt.Printf("  %s (photo %s): %s\n", k.Key, k.PhotoID, k.Reason)
					}
				}
				if rep.DryRun {
					fmt.Println("dry run: nothing deleted; run again with --yes to delete")
				} else if rep.SQL != "" {
					fmt.Printf("the application team may now delete the purged rows:\n%s\n", rep.SQL)
				}
				return err
			})
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.OlderThan, "older-than", 0, "purge photos archived at least this long ago (required, e.g. 2160h)")
	f.BoolVar(&o.Yes, "yes", false, "delete (without it: a dry run)")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	return cmd
}
