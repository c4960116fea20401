package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/inspect"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) photoCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "photo ID",
		Short: "One photo's whole story: its row, ledger, objects, failures, S3 now, what to do",
		Long: `photo prints everything known about one photo, for the engineer the
application team asks about a missing photo: its photos row and whether each
key it references exists in S3 now (a HEAD each), its ledger state, attempts
and timeline, every object move (legacy and new key, size, ETags, copied,
verified, committed, deleted) with both keys checked in S3, the failures
recorded for it (newest 20), and what to do next. It changes nothing.

A message in the queue cannot be looked up without receiving it (which would
spend a delivery): the ledger's state says whether one should be there.`,
		Example: "  migratectl photo 3f1c9a4e-0b7d-4c1e-9a43-2f9d1c6b7e10\n  migratectl photo 42 --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: 2, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				s, err := inspect.Photo(ctx, deps.Store, deps.Objects, args[0])
				if err != nil {
					return err
				}
				if jsonOut {
					return printJSON(s)
				}
				printStory(s)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print as JSON")
	return cmd
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func s3Now(o inspect.Object) string {
	switch {
	case o.Error != "":
		return "S3 could not say: " + o.Error
	case o.Exists:
		return fmt.Sprintf("exists, %d bytes, ETag %s", o.Size, o.ETag)
	}
	return "MISSING"
}

func deref(p *string) string {
	if p == nil {
		return "-"
	}
	return *p
}

func printStory(s inspect.Story) {
	fmt.Printf("photo %s\n\nverdict: %s\n", s.PhotoID, s.Next[0])
	for _, n := range s.Next[1:] {
		fmt.Printf("  next: %s\n", n)
	}
	if s.Row == nil {
		fmt.Println("\nphotos row: none (deleted by the application, or never existed)")
	} else {
		fmt.Printf("\nphotos row: owner %s, status %s\n", deref(s.Row.OwnerID), deref(s.Row.Status))
		for _, o := range s.RowKeys {
			fmt.Printf("  %s  (%s)\n", o.Key, s3Now(o))
		}
	}
	if h := s.Ledger; h == nil {
		fmt.Println("\nledger: never enqueued")
	} else {
		fmt.Printf("\nledger: %s, run %s, %d attempts, enqueued again %d times, worker %s\n", h.State, h.RunID, h.Attempts, h.Rescued, deref(h.WorkerID))
		if h.LastReason != nil || h.LastError != nil {
			fmt.Printf("  last failure: %s: %s\n", deref(h.LastReason), deref(h.LastError))
		}
		fmt.Printf("  enqueued %s, started %s, swapped %s, archived %s, failed %s\n", when(h.Enqueued), when(h.Started), when(h.Swapped), when(h.Archived), when(h.Failed))
		fmt.Printf("  rolled back %s, cleaned %s, purged %s, deleted %s, updated %s\n", when(h.RolledBack), when(h.Cleaned), when(h.Purged), when(h.Deleted), when(&h.Updated))
	}
	fmt.Printf("\nobject moves: %d\n", len(s.Moves))
	for _, m := range s.Moves {
		fmt.Printf("  %s: %s -> %s, %d bytes, source ETag %s, copy ETag %s\n", m.Kind, m.OldKey, m.NewKey, m.Size, m.SourceETag, m.ETag)
		fmt.Printf("    copied %s, verified %s, committed %s, legacy deleted %s\n", when(m.CopiedAt), when(m.VerifiedAt), when(m.CommittedAt), when(m.DeletedAt))
		fmt.Printf("    legacy now: %s\n    new now:    %s\n", s3Now(m.OldNow), s3Now(m.NewNow))
	}
	fmt.Printf("\nfailures recorded: %d\n", len(s.Failures))
	for _, f := range s.Failures {
		kind := "transient"
		if f.Permanent {
			kind = "permanent"
		}
		fmt.Printf("  %s %s (%s, run %s, receive %d): %s\n", f.At.UTC().Format(time.RFC3339), f.Reason, kind, f.RunID, f.ReceiveCount, f.Error)
	}
}
