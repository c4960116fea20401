package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/archived"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) archivedAssignCmd() *cobra.Command {
	var photo, owner, from string
	var o archived.Options
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "assign (--photo ID --owner USER | --from FILE)",
		Short: "Give archived photos an owner after manual review; they are then migrated like any other",
		Long: `archived assign records the outcome of a manual review: the photo belongs to
this owner. For each photo, by compare-and-swap on the row as archived: owner_id
is set and the status the photo had before it was archived (from the ledger) is
restored; the assignment (owner, operator, time, source line) is written to the
ledger in the same transaction; then one message is enqueued, and a worker
migrates the photo like any other. Each invocation is a run (migratectl runs,
status --run, report --run).

--from FILE reads a CSV of photo_id,owner_id lines (an optional header naming
the two columns; blank lines and # comments skipped). Every line is checked
first: malformed ids, unknown photos, photos that are not archived and
ownerless, owners that own no other photo (a likely typo; --allow-new-owner
accepts them), a photo given two owners. One bad line refuses the whole file,
with every bad line and its number listed, and nothing is changed; with
--skip-invalid the valid lines are applied and the others listed.

Resumable and idempotent: assigning the same owner again does nothing; a
photo assigned but whose message was not sent (an interruption) is sent; a
different owner for a photo already assigned is refused.

Exit status: 0 when done, 2 when input was refused (or a row changed under
it), 1 on error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var items []archived.Item
			switch {
			case from != "" && (photo != "" || owner != ""):
				return errors.New("give --photo and --owner, or --from FILE, not both")
			case from != "":
				f, err := os.Open(from)
				if err != nil {
					return fmt.Errorf("--from: %w", err)
				}
				var sum string
				items, o.Invalid, sum, err = archived.ParseCSV(f)
				f.Close()
				if err != nil {
					return fmt.Errorf("--from %s: %w", from, err)
				}
				o.Source, o.SHA256, o.Lines = from, sum, int64(len(items)+len(o.Invalid))
			case photo == "" || owner == "":
				return errors.New("give --photo ID and --owner USER, or --from FILE (a CSV of photo_id,owner_id)")
			default:
				items = []archived.Item{{PhotoID: photo, OwnerID: owner}}
				o.Source = "--photo"
			}
			if o.By == "" {
				o.By = operator()
			}
			return a.run(connect.Options{Need: config.Need{DB: true, Queue: !o.DryRun}, MaxConns: 4, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				res, err := archived.Run(ctx, deps.Store, deps.Queue, items, o)
				var ie *archived.InputError
				if errors.As(err, &ie) {
					if jsonOut {
						_ = printJSON(map[string]any{"refused": ie.Invalid, "source": ie.Source})
					}
					return &cli.ExitError{Code: 2, Err: assignError(err, from)}
				}
				if jsonOut {
					_ = printJSON(res)
				} else {
					printAssign(res)
				}
				if err != nil {
					return assignError(err, from)
				}
				if len(res.Changed) > 0 {
					return &cli.ExitError{Code: 2, Err: fmt.Errorf("%d photos changed while they were being assigned (listed above)", len(res.Changed))}
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&photo, "photo", "", "the archived photo's id")
	f.StringVar(&owner, "owner", "", "its owner's id (as photos.owner_id holds it)")
	f.StringVar(&from, "from", "", "a CSV of photo_id,owner_id lines")
	f.BoolVar(&o.SkipInvalid, "skip-invalid", false, "apply the valid lines and list the others, instead of refusing the whole file")
	f.BoolVar(&o.AllowNewOwner, "allow-new-owner", false, "accept an owner who owns no other photo")
	f.StringVar(&o.By, "by", "", "who decided, recorded in the ledger (default user@host)")
	f.BoolVar(&o.DryRun, "dry-run", false, "check and list what would be done; change nothing")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

func printAssign(res *archived.Result) {
	if res == nil {
		return
	}
	verb := map[archived.Action]string{archived.Assign: "assign", archived.Resend: "resend", archived.Unchanged: "unchanged"}
	for _, d := range res.Decisions {
		where := ""
		if d.Line > 0 {
			where = fmt.Sprintf("  (line %d)", d.Line)
		}
		fmt.Printf("  %-9s %s -> owner %s%s\n", verb[d.Action], d.PhotoID, d.OwnerID, where)
	}
	switch {
	case res.DryRun:
		fmt.Printf("dry run: would assign %d photos and enqueue them, send %d assigned earlier, leave %d already assigned\n", res.Assigned, res.Resent, res.Noop)
	case res.Assigned == 0 && res.Resent == 0:
		fmt.Printf("nothing to do: %d already assigned and enqueued\n", res.Noop)
	default:
		run := ""
		if res.RunID != "" {
			run = " in run " + res.RunID
		}
		fmt.Printf("assigned %d photos and enqueued them%s; sent %d assigned earlier; %d already assigned (nothing to do)\n", res.Assigned, run, res.Resent, res.Noop)
	}
	if len(res.Skipped) > 0 {
		fmt.Printf("skipped %d (--skip-invalid):\n", len(res.Skipped))
		for _, v := range res.Skipped {
			fmt.Println("  " + invalidLine(v))
		}
	}
	if len(res.Changed) > 0 {
		fmt.Printf("left alone %d:\n", len(res.Changed))
		for _, v := range res.Changed {
			fmt.Println("  " + v.String())
		}
	}
}

// assignError words archived assign's errors in the command's flags: a
// refused input says what to do about it, and which flag accepts what.
// from is the --from file ("" for --photo).
func assignError(err error, from string) error {
	var ie *archived.InputError
	switch {
	case errors.As(err, &ie):
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %d of the assignments cannot be applied; nothing was changed. Fix them, remove them, or pass --skip-invalid to apply the others:", ie.Source, len(ie.Invalid))
		for _, v := range ie.Invalid {
			b.WriteString("\n  " + invalidLine(v))
		}
		return cli.Reword(err, "%s", b.String())
	case errors.Is(err, archived.ErrNothingToAssign) && from != "":
		return cli.Reword(err, "--from %s: nothing to assign: the file has no photo_id,owner_id line", from)
	case errors.Is(err, archived.ErrNothingToAssign):
		return cli.Reword(err, "nothing to assign: give --photo and --owner, or --from a CSV of photo_id,owner_id lines")
	}
	return err
}

// invalidLine is an invalid item as the command line says it, with the flag
// that would accept it where there is one.
func invalidLine(v archived.Invalid) string {
	if v.NewOwner {
		return v.String() + ", or pass --allow-new-owner if this owner has no other photo"
	}
	return v.String()
}
