// Package observe is what the binaries expose to the platform they run on:
// Prometheus metrics, and an HTTP server with /healthz (the process is alive),
// /readyz (its dependencies answer and it is not draining) and /metrics.
package observe

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric.
const Namespace = "keymigrate"

// Metrics are the counters, gauges and histograms of one process. A nil
// *Metrics is valid and records nothing, so library code and tests need none.
type Metrics struct {
	Registry *prometheus.Registry

	PhotosProcessed      *prometheus.CounterVec // outcome, reason
	ObjectsCopied        prometheus.Counter
	BytesCopied          prometheus.Counter
	CopySeconds          prometheus.Histogram
	VerifySeconds        prometheus.Histogram
	SwapSeconds          prometheus.Histogram
	PhotoSeconds         prometheus.Histogram
	InFlight             prometheus.Gauge
	ReceiveBatches       prometheus.Counter
	MessagesReceived     prometheus.Counter
	VisibilityExtensions prometheus.Counter
	S3Throttled          *prometheus.CounterVec // operation
	Paused               prometheus.Gauge
	ThrottleRate         prometheus.Gauge // fleet photos/s, 0 when off
	ThrottleShare        prometheus.Gauge // this worker's share, 0 when off
	Enqueued             prometheus.Counter
	Found                prometheus.Counter
	DependencyUp         *prometheus.GaugeVec   // dependency
	HandedBack           *prometheus.CounterVec // reason
	Rescued              prometheus.Counter
	S3RateLimit          prometheus.Gauge
}

// New registers every metric on a fresh registry, with the Go and process
// collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	latency := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
	m := &Metrics{Registry: r}
	m.PhotosProcessed = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "photos_processed_total",
		Help: "Photo messages settled, by outcome (migrated, already_done, archived, skipped, dead_lettered, retry, released) and failure reason."}, []string{"outcome", "reason"})
	m.ObjectsCopied = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "objects_copied_total", Help: "Objects copied to user-scoped keys and verified."})
	m.BytesCopied = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "bytes_copied_total", Help: "Bytes of the objects copied and verified."})
	m.CopySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "copy_seconds", Help: "Time to copy one object (HEAD source, copy, HEAD copy).", Buckets: latency})
	m.VerifySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "verify_seconds", Help: "Time to verify one copy against its source.", Buckets: latency})
	m.SwapSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "swap_seconds", Help: "Time of the compare-and-swap transaction.", Buckets: latency})
	m.PhotoSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "photo_seconds", Help: "Time from receiving a photo's message to settling it.", Buckets: latency})
	m.InFlight = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "photos_in_flight", Help: "Photos this worker holds right now."})
	m.ReceiveBatches = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "receive_batches_total", Help: "ReceiveMessage calls that returned at least one message."})
	m.MessagesReceived = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "messages_received_total", Help: "Messages received."})
	m.VisibilityExtensions = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "visibility_extensions_total", Help: "Heartbeats that extended a message's visibility."})
	m.S3Throttled = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "s3_throttled_total", Help: "S3 responses asking to slow down (every 503, and SlowDown and similar codes), retried or not, by operation."}, []string{"operation"})
	m.Paused = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "paused", Help: "1 while the fleet is paused (migratectl pause)."})
	m.ThrottleRate = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "throttle_rate", Help: "The fleet's rate limit in photos/s (migratectl throttle); 0 when off."})
	m.ThrottleShare = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "throttle_share", Help: "This worker's share of the fleet's rate limit in photos/s; 0 when off."})
	m.Enqueued = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "producer_enqueued_total", Help: "Messages the producer sent."})
	m.Found = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "producer_found_total", Help: "Legacy photos the producer found."})
	m.DependencyUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "dependency_up",
		Help: "1 while the worker finds the dependency (s3, postgres, sqs) answering; 0 while it is down and the worker takes no message."}, []string{"dependency"})
	m.HandedBack = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "messages_handed_back_total",
		Help: "Messages the worker handed back for its own reasons (shutdown, pause, outage) as fresh messages, without spending their receives."}, []string{"reason"})
	m.Rescued = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "photos_rescued_total",
		Help: "Photos enqueued again by the sweeper because their messages were lost."})
	m.S3RateLimit = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "s3_rate_limit",
		Help: "The S3 request rate this process holds itself to after S3 throttled it (requests/s); 0 when unlimited."})
	for _, c := range []prometheus.Collector{m.DependencyUp, m.HandedBack, m.Rescued, m.S3RateLimit, m.PhotosProcessed, m.ObjectsCopied, m.BytesCopied, m.CopySeconds, m.VerifySeconds, m.SwapSeconds,
		m.PhotoSeconds, m.InFlight, m.ReceiveBatches, m.MessagesReceived, m.VisibilityExtensions, m.S3Throttled, m.Paused,
		m.ThrottleRate, m.ThrottleShare, m.Enqueued, m.Found} {
		f(c)
	}
	return m
}

// The methods below are nil-safe, so callers need no "if metrics != nil".

// Photo records a settled message.
func (m *Metrics) Photo(outcome, reason string, seconds float64) {
	if m == nil {
		return
	}
	m.PhotosProcessed.WithLabelValues(outcome, reason).Inc()
	m.PhotoSeconds.Observe(seconds)
}

// SetDependency records whether a dependency answers.
func (m *Metrics) SetDependency(dep string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.DependencyUp.WithLabelValues(dep).Set(v)
}

// HandBack counts a message handed back for reason.
func (m *Metrics) HandBack(reason string) {
	if m == nil {
		return
	}
	m.HandedBack.WithLabelValues(reason).Inc()
}

// Throttle counts one S3 throttling response to operation.
func (m *Metrics) Throttle(operation string) {
	if m == nil {
		return
	}
	m.S3Throttled.WithLabelValues(operation).Inc()
}

// Copied records verified copies.
func (m *Metrics) Copied(objects int, bytes int64) {
	if m == nil {
		return
	}
	m.ObjectsCopied.Add(float64(objects))
	m.BytesCopied.Add(float64(bytes))
}

// Observe records a duration on h (one of the histograms) if m is set.
func (m *Metrics) Observe(h func(*Metrics) prometheus.Histogram, seconds float64) {
	if m == nil {
		return
	}
	h(m).Observe(seconds)
}

// Add adds n to the counter c picks, if m is set.
func (m *Metrics) Add(c func(*Metrics) prometheus.Counter, n float64) {
	if m == nil {
		return
	}
	c(m).Add(n)
}

// Set sets the gauge g picks, if m is set.
func (m *Metrics) Set(g func(*Metrics) prometheus.Gauge, v float64) {
	if m == nil {
		return
	}
	g(m).Set(v)
}

// Selectors for Observe, Add and Set.
var (
	CopyHist    = func(m *Metrics) prometheus.Histogram { return m.CopySeconds }
	VerifyHist  = func(m *Metrics) prometheus.Histogram { return m.VerifySeconds }
	SwapHist    = func(m *Metrics) prometheus.Histogram { return m.SwapSeconds }
	Batches     = func(m *Metrics) prometheus.Counter { return m.ReceiveBatches }
	Received    = func(m *Metrics) prometheus.Counter { return m.MessagesReceived }
	Extensions  = func(m *Metrics) prometheus.Counter { return m.VisibilityExtensions }
	EnqueuedCtr = func(m *Metrics) prometheus.Counter { return m.Enqueued }
	FoundCtr    = func(m *Metrics) prometheus.Counter { return m.Found }
	RescuedCtr  = func(m *Metrics) prometheus.Counter { return m.Rescued }
	S3RateG     = func(m *Metrics) prometheus.Gauge { return m.S3RateLimit }
	InFlightG   = func(m *Metrics) prometheus.Gauge { return m.InFlight }
	PausedG     = func(m *Metrics) prometheus.Gauge { return m.Paused }
	RateG       = func(m *Metrics) prometheus.Gauge { return m.ThrottleRate }
	ShareG      = func(m *Metrics) prometheus.Gauge { return m.ThrottleShare }
)
