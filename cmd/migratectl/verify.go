package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) verifyCmd() *cobra.Command {
	var o verify.Options
	var jsonOut, requeue, repair bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the migration (the Phase 3 gate); exit 2 and list problems if any check fails",
		Long: `verify checks, without changing anything:
  - no row (archived rows aside) references a legacy key;
  - every key a row references is inside users/{owner_id}/ and exists;
  - every object the ledger records as moved exists at its new key with the
    recorded size and checksum (or ETag);
  - the legacy object of every move still exists unless cleanup deleted it, and
    still has the ETag it was copied from;
  - no migrated photo has legacy objects that were never moved (an animation
    written under the old layout after the swap); --requeue enqueues them;
  - rows not migrated yet (archived ones included) still have every legacy
    object they reference or derive.
It also reports, without failing on them: orphan legacy objects (no row
references them and the ledger did not move them, like unreferenced restores);
moved objects the application rewrote, superseded or deleted since (a user's
deletion is final: --requeue never copies those again; --requeue --repair does,
for an operator who knows they were lost rather than deleted); objects of
photos the application deleted.
With --deep it also compares each moved object with its legacy source: size,
content type, user metadata, then checksum, or the bytes themselves.

--run RUN checks only the rows and moved objects of the photos the ledger
attributes to that run (the legacy prefixes are not listed: run verify without
--run for orphans and unmoved legacy objects).

Exit status: 0 when every check passed, 2 when some failed (listed), 1 on error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if repair && !requeue {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("--repair goes with --requeue: it enqueues the photos whose copies are missing, with a repair request")}
			}
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true, Queue: requeue}, MaxConns: 4}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				r, err := verify.Run(ctx, deps.Store, deps.Objects, o)
				if err != nil {
					return err
				}
				if jsonOut {
					_ = printJSON(r)
				} else {
					printReport(r, o.Deep)
				}
				if requeue {
					runID := "verify-requeue-" + time.Now().UTC().Format("20060102T150405Z")
					if err := enqueue(ctx, deps.Queue, r.Requeue, runID, false); err != nil {
						return err
					}
					if len(r.Requeue) > 0 {
						fmt.Printf("re-enqueued %d photos with unmoved legacy objects (run %s); verify again once workers have drained the queue\n", len(r.Requeue), runID)
					}
					if repair {
						if err := enqueue(ctx, deps.Queue, r.Repair, runID, true); err != nil {
							return err
						}
						fmt.Printf("asked for the repair of %d photos with missing copies (run %s)\n", len(r.Repair), runID)
					} else if len(r.Repair) > 0 {
						fmt.Printf("%d photos have copies missing; not repaired: if they were lost rather than deleted by the application, run verify --requeue --repair\n", len(r.Repair))
					}
				}
				if !r.OK() {
					return &cli.ExitError{Code: 2, Err: fmt.Errorf("verification failed: %d problems", r.ProblemCount)}
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Deep, "deep", false, "also compare every moved object with its legacy source")
	f.StringVar(&o.RunID, "run", "", "check only the photos of this run (migratectl runs lists them)")
	f.IntVar(&o.Concurrency, "concurrency", 16, "S3 requests in flight")
	f.IntVar(&o.MaxProblems, "max-problems", 100, "problems listed (all are counted)")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	f.BoolVar(&requeue, "requeue", false, "enqueue the migrated photos that still have unmoved legacy objects (needs --queue-url)")
	f.BoolVar(&repair, "repair", false, "with --requeue: also copy again, from their legacy objects, the moved objects that are missing (only if you know they were lost, not deleted by the application)")
	return cmd
}

// enqueue sends one message per photo, in batches.
func enqueue(ctx context.Context, q *queue.Queue, photos []string, runID string, repair bool) error {
	for start := 0; start < len(photos); start += queue.MaxBatch {
		var bodies []string
		for _, id := range photos[start:min(start+queue.MaxBatch, len(photos))] {
			bodies = append(bodies, queue.Encode(queue.Message{PhotoID: id, RunID: runID, Repair: repair}))
		}
		if err := q.SendBatch(ctx, bodies, time.Minute); err != nil {
			return err
		}
	}
	return nil
}

func printReport(r *verify.Report, deep bool) {
	if r.RunID != "" {
		fmt.Printf("run:               %s (only its photos; legacy prefixes not listed)\n", r.RunID)
	}
	fmt.Printf("rows checked:      %d (%d archived, left as they are)\n", r.RowsChecked, r.ArchivedRows)
	fmt.Printf("moved objects:     %d checked at their new keys\n", r.ObjectsChecked)
	fmt.Printf("legacy objects:    %d still present, %d cleaned up\n", r.LegacyPresent, r.LegacyDeleted)
	if deep {
		fmt.Printf("deep comparisons:  %d copies identical to their legacy source\n", r.DeepCompared-r.ProblemsByKind[verify.CopyDiffersFromLegacy])
	}
	fmt.Printf("application:       %d rewritten, %d superseded, %d missing (deleted by the application, or lost), %d of deleted photos\n", r.Rewritten, r.Superseded, r.Missing, r.DeletedPhotos)
	if r.LegacyListed {
		fmt.Printf("orphans:           %d legacy objects no row references (reported, kept)\n", r.OrphanCount)
	}
	for _, k := range r.Orphans {
		fmt.Printf("  orphan %s\n", k)
	}
	if r.OK() {
		fmt.Println("verify: OK")
		return
	}
	fmt.Fprintf(os.Stdout, "verify: FAILED, %d problems\n", r.ProblemCount)
	for kind, n := range r.ProblemsByKind {
		fmt.Printf("  %-28s %d\n", kind, n)
	}
	for _, p := range r.Problems {
		fmt.Printf("  %s photo=%s key=%s: %s\n", p.Kind, p.PhotoID, p.Key, p.Detail)
	}
	if int64(len(r.Problems)) < r.ProblemCount {
		fmt.Printf("  … %d more (raise --max-problems)\n", r.ProblemCount-int64(len(r.Problems)))
	}
}
