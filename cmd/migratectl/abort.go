package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) abortCmd() *cobra.Command {
	var runID string
	cmd := &cobra.Command{
		Use:   "abort --run R",
		Short: "Stop a run: none of its photos is migrated after this returns",
		Long: `abort stops a producer run for good, in one ledger transaction:

- the run is recorded as aborted (by whom, when) and finished: no producer
  resumes it, and a producer still running for it fails at its next group
  ("run ... was aborted");
- its photos still enqueued or in progress are marked rolled back: workers drop
  their queued messages (a rolled-back photo moves again only for a run started
  later), a worker holding one finds it rolled back at its swap and deletes the
  copies it made, and the lost-message sweeper never picks them.

Photos the run already migrated stay migrated: 'migratectl rollback --all --run R'
swaps them back (after abort, so that nothing of the run moves meanwhile).
'producer --new-run' starts over later. Aborting an aborted run changes nothing.
The queued messages stay in the queue until workers receive and drop them;
pause the fleet first if you also want it to take nothing.`,
		Example: "  migratectl runs\n  migratectl abort --run run-20261206T172324Z-91740e\n  migratectl rollback --all --run run-20261206T172324Z-91740e --dry-run",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runID == "" {
				return errors.New("give --run R, the run to abort (`migratectl runs` lists them)")
			}
			return a.run(connect.Options{Need: config.Need{DB: true}, MaxConns: 2, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				ab, err := deps.Store.RunAbort(ctx, runID, operator())
				if err != nil {
					return err
				}
				if ab.Already {
					fmt.Printf("run %s was already aborted at %s by %s: nothing changed\n", ab.RunID, ab.At.UTC().Format(time.RFC3339), ab.By)
					return nil
				}
				fmt.Printf("aborted run %s at %s: %d photos enqueued or in progress will not be migrated (marked rolled back; workers drop their messages, the sweeper skips them)\n",
					ab.RunID, ab.At.UTC().Format(time.RFC3339), ab.Stopped)
				fmt.Printf("photos it already migrated stay migrated: `migratectl rollback --all --run %s --dry-run` lists them; `producer --new-run` starts over\n", ab.RunID)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&runID, "run", "", "the run to abort (`migratectl runs` lists them)")
	return cmd
}
