// Command migratectl is the operator's tool: set up the ledger and queues, seed
// demo data, watch progress, verify, and (see --help) the other operations.
package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

// app is what every subcommand shares: the common flags and how to open them.
type app struct {
	common *config.Common
	binder *config.Binder
	// component is the subcommand's path ("migratectl dlq redrive"), the
	// name its recorded AWS calls carry (docs/iam.md).
	component string
}

func main() {
	root := &cobra.Command{
		Use:   "migratectl",
		Short: "Operate the keymigrate migration: setup, seed, status, verify",
		Long: `migratectl operates a keymigrate migration. Every subcommand reads the same
connection settings (flags or environment variables, listed under Global Flags).

Start with 'migratectl setup' (ledger schema, bucket check, queues), run the
producer and workers, watch with 'migratectl status --watch', and gate the
cleanup on 'migratectl verify'.`,
	}
	a := &app{common: &config.Common{}}
	a.binder = config.NewBinder(root.PersistentFlags())
	a.common.Bind(a.binder)
	root.AddCommand(a.setupCmd(), a.seedCmd(), a.statusCmd(), a.verifyCmd(), a.devResetCmd(),
		a.dlqCmd(), a.archivedCmd(), a.rollbackCmd(), a.cleanupCmd(), a.presignCmd(),
		a.runsCmd(), a.reportCmd(), a.planCmd(), a.ledgerCmd(), a.inventoryCmd(), a.sweepCmd(), a.photoCmd(), a.abortCmd())
	root.AddCommand(a.controlCmds()...)
	wordErrors(root, inventoryError)
	a.component = "migratectl"
	if cmd, _, err := root.Find(os.Args[1:]); err == nil {
		a.component = cmd.CommandPath()
	}
	cli.Execute(root)
}

// wordErrors passes the error of every subcommand of cmd through word: the
// libraries' errors that any subcommand may meet, said once in migratectl's
// terms.
func wordErrors(cmd *cobra.Command, word func(error) error) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error { return word(run(c, args)) }
	}
	for _, sub := range cmd.Commands() {
		wordErrors(sub, word)
	}
}

// open validates the flags and opens what the subcommand needs.
func (a *app) open(ctx context.Context, o connect.Options) (*connect.Deps, *zap.Logger, error) {
	if err := a.binder.Err(); err != nil {
		return nil, nil, err
	}
	log, err := cli.Logger(a.common)
	if err != nil {
		return nil, nil, err
	}
	o.Component = a.component
	deps, err := connect.Open(ctx, a.common, o)
	if err != nil {
		return nil, nil, err
	}
	return deps, log, nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// run handles signals, opens what a subcommand needs for the length of fn, and
// closes it again: the preamble every subcommand shares.
func (a *app) run(o connect.Options, fn func(ctx context.Context, deps *connect.Deps, log *zap.Logger) error) error {
	ctx, stop := cli.SignalContext()
	defer stop()
	// For benchmarks (make scale-bench): a CPU profile of the command.
	if path := os.Getenv("KEYMIGRATE_CPU_PROFILE"); path != "" {
		stopProfile, err := cli.StartCPUProfile(path)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	// For benchmarks: the heap near its peak, to say what the peak RSS
	// make scale-bench reports is made of.
	if path := os.Getenv("KEYMIGRATE_HEAP_PROFILE"); path != "" {
		stopProfile, err := cli.StartPeakHeapProfile(path, 2*time.Second)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	deps, log, err := a.open(ctx, o)
	if err != nil {
		return err
	}
	defer deps.Close()
	return fn(ctx, deps, log)
}
