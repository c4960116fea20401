package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/report"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) runsCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List the runs in the ledger (producer passes and archived assignments) with their selection",
		Long: `runs lists every run the ledger knows, newest first: its id, kind (producer
or assign), when it started and finished, its counts and the selection it
enqueued (owners, photo list and its hash, sample, limit). Use a run id with
status --run, verify --run and report --run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true}, MaxConns: 2, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				runs, err := deps.Store.RunList(ctx)
				if err != nil {
					return err
				}
				if jsonOut {
					type jsonRun struct {
						ID         string            `json:"run_id"`
						Kind       string            `json:"kind"`
						StartedAt  time.Time         `json:"started_at"`
						FinishedAt *time.Time        `json:"finished_at,omitempty"`
						Counts     ledger.RunCounts  `json:"counts"`
						Selection  *ledger.Selection `json:"selection,omitempty"`
					}
					out := make([]jsonRun, 0, len(runs))
					for _, r := range runs {
						out = append(out, jsonRun{r.ID, r.Kind, r.StartedAt, r.FinishedAt, r.Counts, r.Selection})
					}
					return printJSON(out)
				}
				if len(runs) == 0 {
					fmt.Println("no runs yet: the producer starts one")
					return nil
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "RUN\tKIND\tSTARTED\tFINISHED\tFOUND\tENQUEUED\tSELECTION")
				for _, r := range runs {
					fin := "-"
					if r.FinishedAt != nil {
						fin = r.FinishedAt.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.ID, r.Kind, r.StartedAt.UTC().Format(time.RFC3339), fin, r.Counts.Found, r.Counts.Enqueued, r.Selection)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print as JSON")
	return cmd
}

func (a *app) reportCmd() *cobra.Command {
	var runID, output, format string
	cmd := &cobra.Command{
		Use:   "report --run RUN",
		Short: "The audit record of a run: one CSV (or JSON lines) line per object of each of its photos",
		Long: `report writes, like S3 Batch Operations' completion report, every photo of a
run with its final state and, one line per object, the old and new keys, the
bytes, the object's state (committed, copied, new_deleted), how the copy was
verified (checksum algorithm and value, or ETag, or bytes), the source and new
ETags, the attempts, the last failure reason and error, and the timestamps. A
photo without objects (archived, failed before any copy) has one line per key
its row held, or a single line.

A photo belongs to the last run that enqueued it. The report is streamed from
the ledger in pages (bounded memory); with --output it is written to a
temporary file renamed into place at the end, so a file that exists is
complete. A summary goes to standard error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runID == "" {
				return errors.New("give --run RUN (migratectl runs lists the runs)")
			}
			f, err := report.ParseFormat(format)
			if err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			return a.run(connect.Options{Need: config.Need{DB: true}, MaxConns: 2, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				var w io.Writer = os.Stdout
				var tmp *os.File
				if output != "" && output != "-" {
					tmp, err = os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".*")
					if err != nil {
						return fmt.Errorf("--output: %w", err)
					}
					defer os.Remove(tmp.Name())
					defer tmp.Close()
					w = tmp
				}
				sum, err := report.Write(ctx, deps.Store, runID, f, w)
				if err != nil {
					return err
				}
				if tmp != nil {
					if err := tmp.Close(); err != nil {
						return fmt.Errorf("--output: %w", err)
					}
					if err := os.Rename(tmp.Name(), output); err != nil {
						return fmt.Errorf("--output: %w", err)
					}
				}
				fmt.Fprintf(os.Stderr, "report of run %s: %d photos, %d objects, %s, %d lines; states:", sum.RunID, sum.Photos, sum.Objects, humanize.IBytes(uint64(sum.Bytes)), sum.Lines)
				for _, st := range ledger.States() {
					if n := sum.States[st]; n > 0 {
						fmt.Fprintf(os.Stderr, " %s=%d", st, n)
					}
				}
				fmt.Fprintln(os.Stderr)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&runID, "run", "", "the run to report (required; migratectl runs lists them)")
	f.StringVarP(&output, "output", "o", "-", "file to write (- for standard output)")
	f.StringVar(&format, "format", "csv", "csv or jsonl (one JSON object per line)")
	return cmd
}
