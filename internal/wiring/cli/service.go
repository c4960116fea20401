package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// Service is the preamble the long-running mains (producer, worker) share:
// the common flags and --listen, bound to flags and environment variables;
// then, when the command runs, the logger, the signal context, the
// connections and the /healthz, /readyz and /metrics server.
type Service struct {
	// Binder binds the command's own flags, each backed by a variable.
	Binder *config.Binder
	// Common holds the settings every binary shares (where the data is).
	Common *config.Common
	listen string
}

// NewService binds the common flags and --listen (whose help is listenUsage)
// on cmd.
func NewService(cmd *cobra.Command, listenUsage string) *Service {
	s := &Service{Binder: config.NewBinder(cmd.Flags()), Common: &config.Common{}}
	s.Common.Bind(s.Binder)
	s.Binder.String(&s.listen, "listen", "KEYMIGRATE_LISTEN", "", listenUsage)
	return s
}

// Check reports every environment variable that could not be parsed. Start
// checks too; a main that validates flags of its own calls Check first, so
// that a bad variable is reported before anything else.
func (s *Service) Check() error { return s.Binder.Err() }

// Running is a started Service. Close releases it.
type Running struct {
	Log  *zap.Logger
	Deps *connect.Deps
	// Metrics are what /metrics serves.
	Metrics *observe.Metrics
	// closers run in reverse order of what Start opened.
	closers []func()
}

// Start checks the variables, builds the logger, installs the signal
// handling (the returned context ends at the first SIGINT or SIGTERM), opens
// what o asks for and serves /healthz, /readyz and /metrics on --listen (if
// given). o.Metrics, if set, are the metrics served, and connect counts S3
// throttling into them; if nil, Start makes fresh ones, which connect does not
// see. On an error, what was started is released.
func (s *Service) Start(o connect.Options) (context.Context, *Running, error) {
	if err := s.Check(); err != nil {
		return nil, nil, err
	}
	log, err := Logger(s.Common)
	if err != nil {
		return nil, nil, err
	}
	r := &Running{Log: log, Metrics: o.Metrics}
	r.closers = append(r.closers, func() { _ = log.Sync() })
	ctx, stop := SignalContext()
	r.closers = append(r.closers, stop)
	if r.Deps, err = connect.Open(ctx, s.Common, o); err != nil {
		r.Close()
		return nil, nil, err
	}
	r.closers = append(r.closers, r.Deps.Close)
	if r.Metrics == nil {
		r.Metrics = observe.New()
	}
	stopObserve, err := Observe(ctx, s.listen, r.Metrics, r.Deps.Checks(), log)
	if err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("--listen %s: %w", s.listen, err)
	}
	r.closers = append(r.closers, stopObserve)
	return ctx, r, nil
}

// Close stops the metrics server, closes the connections, restores the
// default signal handling and flushes the log, in that order.
func (r *Running) Close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
}
