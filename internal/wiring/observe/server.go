package observe

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness check: nil when the dependency answers.
type Check func(ctx context.Context) error

// Server serves /healthz, /readyz and /metrics.
type Server struct {
	srv      *http.Server
	ln       net.Listener
	checks   map[string]Check
	draining atomic.Bool

	mu       sync.Mutex
	lastAt   time.Time
	lastErrs map[string]error
}

// CacheFor is how long a readiness result is reused: probes every few seconds
// from several places must not turn into a request storm on the dependencies.
const CacheFor = 3 * time.Second

// Listen opens the server's socket (addr like ":9090" or "127.0.0.1:0").
func Listen(addr string, m *Metrics, checks map[string]Check) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, checks: checks}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", s.readyz)
	if m != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// SetDraining marks the process as draining: /readyz answers 503 from now on,
// so the platform stops counting on it while it finishes its work.
func (s *Server) SetDraining() { s.draining.Store(true) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	status := map[string]string{}
	ready := true
	if s.draining.Load() {
		status["process"] = "draining"
		ready = false
	}
	for name, err := range s.run(r.Context()) {
		status[name] = "ok"
		if err != nil {
			status[name] = err.Error()
			ready = false
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(status)
}

// run runs every check (or answers from the last run, if recent) and returns
// each check's error, nil when it passed.
func (s *Server) run(ctx context.Context) map[string]error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErrs != nil && time.Since(s.lastAt) < CacheFor {
		return s.lastErrs
	}
	out := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for name, c := range s.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c(ctx)
			mu.Lock()
			out[name] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.lastAt, s.lastErrs = time.Now(), out
	return out
}
