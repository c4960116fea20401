package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// control follows the fleet-wide control record (pause, rate) and keeps this
// worker's heartbeat, so that an operator's `migratectl pause` or `throttle`
// reaches every worker within one ControlInterval.
type control struct {
	store    *ledger.Store
	log      *zap.Logger
	id       string
	interval time.Duration
	inflight func() int64

	paused  atomic.Bool
	limited atomic.Bool
	limiter *rate.Limiter   // shared; its limit is this worker's share of the fleet rate
	waiting func() []string // dependencies the worker waits for
	changed chan struct{}   // nudged when the pause state flips
	metrics *observe.Metrics
	folded  time.Time // when this worker last folded the ledger's counters
}

// newWorkerID names a worker: host, process and a random suffix (several
// workers can live in one test process).
// counterFoldEvery is how often each worker folds the ledger's counters.
const counterFoldEvery = 10 * time.Second

func newWorkerID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

func newControl(store *ledger.Store, log *zap.Logger, id string, interval time.Duration, inflight func() int64, m *observe.Metrics) *control {
	return &control{
		store: store, log: log, interval: interval, inflight: inflight,
		id:      id,
		limiter: rate.NewLimiter(rate.Inf, 1),
		changed: make(chan struct{}, 1),
		metrics: m,
	}
}

// refresh reads the control record and records the heartbeat once.
func (c *control) refresh(ctx context.Context) error {
	ctl, err := c.store.ControlGet(ctx)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	beat := ledger.WorkerBeat{WorkerID: c.id, Host: host, PID: os.Getpid(), Paused: ctl.Paused, InFlight: int(c.inflight())}
	if c.waiting != nil {
		beat.WaitingFor = strings.Join(c.waiting(), ",")
	}
	live, err := c.store.WorkerHeartbeat(ctx, beat, 3*c.interval)
	if err != nil {
		return err
	}
	// Fold the ledger's counter deltas now and then, so status reads few
	// rows whether or not anyone watches it (single-flight across the fleet).
	if time.Since(c.folded) >= counterFoldEvery {
		c.folded = time.Now()
		if _, err := c.store.CounterFold(ctx); err != nil {
			c.log.Warn("control: fold the ledger's counters", zap.Error(err))
		}
	}
	if was := c.paused.Swap(ctl.Paused); was != ctl.Paused {
		c.log.Info("control: pause state changed", zap.Bool("paused", ctl.Paused), zap.String("by", ctl.UpdatedBy))
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
	paused := 0.0
	if ctl.Paused {
		paused = 1
	}
	c.metrics.Set(observe.PausedG, paused)
	if ctl.RateLimit == nil {
		c.metrics.Set(observe.RateG, 0)
		c.metrics.Set(observe.ShareG, 0)
		if c.limited.Swap(false) {
			c.log.Info("control: throttle removed")
		}
		c.limiter.SetLimit(rate.Inf)
		return nil
	}
	share := *ctl.RateLimit / float64(max(live, 1))
	if !c.limited.Swap(true) || c.limiter.Limit() != rate.Limit(share) {
		c.log.Info("control: throttled", zap.Float64("fleet_rate", *ctl.RateLimit), zap.Int("live_workers", live), zap.Float64("share", share))
	}
	c.limiter.SetLimit(rate.Limit(share))
	c.metrics.Set(observe.RateG, *ctl.RateLimit)
	c.metrics.Set(observe.ShareG, share)
	return nil
}

// run refreshes every interval until ctx ends, then removes the heartbeat.
func (c *control) run(ctx context.Context) {
	every(ctx, c.interval, func() {
		if err := c.refresh(ctx); err != nil && ctx.Err() == nil {
			// Keep the last known state: a database hiccup must not unpause
			// a paused fleet or lift a throttle.
			c.log.Warn("control: refresh failed; keeping the last state", zap.Error(err))
		}
	})
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.store.WorkerLeave(lctx, c.id); err != nil {
		c.log.Warn("remove heartbeat", zap.Error(err))
	}
}

// waitUnpaused blocks while the fleet is paused. It returns false if ctx ended.
func (c *control) waitUnpaused(ctx context.Context) bool {
	for c.paused.Load() {
		select {
		case <-ctx.Done():
			return false
		case <-c.changed:
		case <-time.After(c.interval):
		}
	}
	return ctx.Err() == nil
}
