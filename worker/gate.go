package worker

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/pipeline/failure"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// downAfter is how many dependency failures in a row mark a dependency down.
const downAfter = 3

// gate follows the dependencies the worker relies on (S3, Postgres, SQS). One
// that fails downAfter times in a row is down: the worker takes no message
// until a probe finds it answering again, and what fails meanwhile is handed
// back without spending its receives. An outage is not a failure of the
// photos it happens to.
type gate struct {
	mu      sync.Mutex
	fails   map[string]int
	down    map[string]time.Time
	changed chan struct{}
	log     *zap.Logger
	metrics *observe.Metrics
}

func newGate(log *zap.Logger, m *observe.Metrics) *gate {
	g := &gate{fails: map[string]int{}, down: map[string]time.Time{}, changed: make(chan struct{}, 1), log: log, metrics: m}
	for _, d := range []string{failure.S3, failure.Postgres, failure.SQS} {
		m.SetDependency(d, true)
	}
	return g
}

// failed records a failure of dep and reports whether dep is now down.
func (g *gate) failed(dep string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, down := g.down[dep]; down {
		return true
	}
	g.fails[dep]++
	if g.fails[dep] < downAfter {
		return false
	}
	g.down[dep] = time.Now()
	g.metrics.SetDependency(dep, false)
	g.log.Warn("dependency down: taking no message until it answers again", zap.String("dependency", dep))
	return true
}

// succeeded records that deps answered.
func (g *gate) succeeded(deps ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range deps {
		g.fails[d] = 0
	}
}

// up marks dep as answering again.
func (g *gate) up(dep string) {
	g.mu.Lock()
	since, was := g.down[dep]
	delete(g.down, dep)
	g.fails[dep] = 0
	g.mu.Unlock()
	if was {
		g.metrics.SetDependency(dep, true)
		g.log.Info("dependency back: taking messages again", zap.String("dependency", dep), zap.Duration("down_for", time.Since(since)))
		select {
		case g.changed <- struct{}{}:
		default:
		}
	}
}

// isDown reports whether dep is down.
func (g *gate) isDown(dep string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, down := g.down[dep]
	return down
}

// waitingFor lists the dependencies that are down, sorted ("" if none).
func (g *gate) waitingFor() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.down))
	for d := range g.down {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// wait blocks while a dependency is down. It returns false if ctx ended.
func (g *gate) wait(ctx context.Context, probe time.Duration) bool {
	for len(g.waitingFor()) > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-g.changed:
		case <-time.After(probe):
		}
	}
	return ctx.Err() == nil
}

// probe tries every dependency that is down, every interval, until ctx ends.
func (g *gate) probe(ctx context.Context, interval time.Duration, checks map[string]func(context.Context) error) {
	every(ctx, interval, func() {
		for _, dep := range g.waitingFor() {
			check, ok := checks[dep]
			if !ok {
				g.up(dep)
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, interval)
			err := check(pctx)
			cancel()
			if err == nil {
				g.up(dep)
			}
		}
	})
}
