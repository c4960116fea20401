// Package cli holds what the three mains share around cobra: signal handling
// that stops once, logger construction, the convention that errors are
// logged (or printed) once, at the edge, with what to do about them, and
// (Service) the preamble of the long-running producer and worker.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/logging"
)

// SignalContext returns a context cancelled by the first SIGINT or SIGTERM. The
// second signal is left to the default handler, which ends the process at once.
func SignalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore default handling: a second signal kills
	}()
	return ctx, stop
}

// Logger builds the logger from the common flags.
func Logger(c *config.Common) (*zap.Logger, error) {
	return logging.New(c.LogFormat, c.LogLevel)
}

// Execute runs cmd and exits non-zero, printing the error once, if it fails.
func Execute(cmd *cobra.Command) {
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", cmd.Name(), err)
		var ee *ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.Code)
		}
		os.Exit(1)
	}
}

// WordedError is an error a library returned, worded for the command line:
// the flag it concerns, what was wrong and what to do. Libraries describe the
// condition; the command, which knows its flags, says it in their terms. The
// library's error stays in the chain, for errors.Is and errors.As.
type WordedError struct {
	Msg string
	Err error
}

// Error is the command line's wording.
func (e *WordedError) Error() string { return e.Msg }

// Unwrap returns the library's error.
func (e *WordedError) Unwrap() error { return e.Err }

// Reword returns err worded as format says, keeping err in the chain.
func Reword(err error, format string, args ...any) error {
	return &WordedError{Msg: fmt.Sprintf(format, args...), Err: err}
}

// ExitError carries a specific exit code (verify uses 2 for "failed checks").
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the process exit code.
func (e *ExitError) ExitCode() int { return e.Code }
