package cli

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// Observe starts the /healthz, /readyz and /metrics server on addr (nothing if
// addr is empty). /readyz turns unready as soon as ctx ends (the process is
// draining). The returned stop shuts the server down.
func Observe(ctx context.Context, addr string, m *observe.Metrics, checks map[string]observe.Check, log *zap.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	srv, err := observe.Listen(addr, m, checks)
	if err != nil {
		return nil, err
	}
	log.Info("serving /healthz, /readyz and /metrics", zap.String("addr", srv.Addr()))
	go func() {
		if err := srv.Serve(); err != nil {
			log.Error("metrics server", zap.Error(err))
		}
	}()
	go func() {
		<-ctx.Done()
		srv.SetDraining()
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}
