package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

// operator names who changed the control record.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func (a *app) controlCmds() []*cobra.Command {
	var dryRun bool
	set := func(use, short, long string, apply func(cmd *cobra.Command, st *ledger.Store) (string, error)) *cobra.Command {
		c := &cobra.Command{
			Use: use, Short: short, Long: long, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return a.run(connect.Options{Need: config.Need{DB: true}, MaxConns: 2, CheckSchema: true}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
					msg, err := apply(cmd, deps.Store)
					if err != nil {
						return err
					}
					fmt.Println(msg)
					return nil
				})
			},
		}
		c.Flags().BoolVar(&dryRun, "dry-run", false, "say what would change; change nothing")
		return c
	}
	const note = "\n\nWorkers read the control record every --control-interval (2s by default)."
	pause := set("pause", "Stop every worker from taking new messages",
		"pause tells every worker to stop receiving. Photos in hand finish; a paused\nworker then holds no message, and messages a long poll brings in are handed\nback at once. migratectl status shows the state."+note,
		func(cmd *cobra.Command, st *ledger.Store) (string, error) {
			if dryRun {
				return "dry run: would pause the fleet", nil
			}
			return "paused: workers take no new message", st.ControlSetPaused(cmd.Context(), true, operator())
		})
	resume := set("resume", "Let paused workers take messages again", "resume undoes pause."+note,
		func(cmd *cobra.Command, st *ledger.Store) (string, error) {
			if dryRun {
				return "dry run: would resume the fleet", nil
			}
			return "resumed", st.ControlSetPaused(cmd.Context(), false, operator())
		})
	var rate float64
	var off bool
	throttle := set("throttle", "Limit the whole fleet to --rate photos per second, or lift it with --off",
		"throttle sets a rate for the whole fleet, in photos per second; each live worker\ntakes its share (rate / live workers, recomputed as workers come and go)."+note,
		func(cmd *cobra.Command, st *ledger.Store) (string, error) {
			switch {
			case off && cmd.Flags().Changed("rate"):
				return "", errors.New("give either --rate N or --off, not both")
			case off:
				if dryRun {
					return "dry run: would lift the throttle", nil
				}
				return "throttle lifted", st.ControlSetRateLimit(cmd.Context(), nil, operator())
			case rate <= 0:
				return "", fmt.Errorf("--rate must be a positive number of photos per second (got %g); use --off to lift the throttle", rate)
			}
			if dryRun {
				return fmt.Sprintf("dry run: would throttle the fleet to %g photos/s", rate), nil
			}
			return fmt.Sprintf("throttled: the fleet takes at most %g photos/s", rate), st.ControlSetRateLimit(cmd.Context(), &rate, operator())
		})
	throttle.Flags().Float64Var(&rate, "rate", 0, "photos per second for the whole fleet")
	throttle.Flags().BoolVar(&off, "off", false, "lift the throttle")
	return []*cobra.Command{pause, resume, throttle}
}
