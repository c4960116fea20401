// Package faultproxy is an S3 fault proxy for soak and fault tests: an
// httputil.ReverseProxy in front of a path-style S3 server that injects, at
// configurable rates and in timed windows, the failures S3 really produces —
// 503 SlowDown with S3's XML body, 500 InternalError, connection resets
// (before the request reaches the server, or after it was executed and before
// the client sees the answer), added latency, and HTTP 200 carrying an <Error>
// document on CopyObject, UploadPartCopy and CompleteMultipartUpload (S3
// documents that these can fail after the status line was sent). It can also
// hold requests to a hard limit, answering SlowDown to those above N per
// second, as S3 does to a prefix asked for more than it sustains. It counts
// requests by operation and faults by kind.
//
// The proxy keeps the client's Host header, so SigV4 signatures made for the
// proxy's address stay valid at the server. It is a test tool: nothing in the
// production binaries imports it.
package faultproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Fault is a kind of injected failure.
type Fault string

// The faults the proxy injects.
const (
	// SlowDown answers 503 with S3's SlowDown error document (no body on HEAD,
	// as S3 does); the request does not reach the server.
	SlowDown Fault = "slowdown_503"
	// InternalError answers 500 InternalError; the request does not reach the server.
	InternalError Fault = "internal_500"
	// ResetBefore resets the connection (TCP RST) without forwarding the request.
	ResetBefore Fault = "reset_before"
	// ResetAfter forwards the request, lets the server execute it, then resets
	// the connection instead of answering: the client cannot know it happened.
	ResetAfter Fault = "reset_after"
	// Latency delays the request before it is forwarded.
	Latency Fault = "latency"
	// ErrorIn200 answers 200 OK with an InternalError document on the operations
	// that S3 documents can fail that way; the request does not reach the server.
	ErrorIn200 Fault = "error_in_200"
)

// Faults lists every kind, in report order.
var Faults = []Fault{SlowDown, InternalError, ResetBefore, ResetAfter, Latency, ErrorIn200}

// Rates are the probabilities, per request, of each fault. SlowDown,
// InternalError, ResetBefore and ErrorIn200 (eligible operations only) exclude
// each other; Latency is drawn independently, and ResetAfter applies to
// requests that were forwarded. Limit is not a probability but a hard limit,
// checked before the random faults.
type Rates struct {
	SlowDown      float64 `json:"slowdown_503,omitempty"`
	InternalError float64 `json:"internal_500,omitempty"`
	ResetBefore   float64 `json:"reset_before,omitempty"`
	ResetAfter    float64 `json:"reset_after,omitempty"`
	ErrorIn200    float64 `json:"error_in_200,omitempty"`
	Latency       float64 `json:"latency,omitempty"`
	// LatencyMin and LatencyMax bound the added latency (uniform).
	LatencyMin time.Duration `json:"latency_min,omitempty"`
	LatencyMax time.Duration `json:"latency_max,omitempty"`
	// Limit, if positive, is a hard limit in requests per second: a token
	// bucket (golang.org/x/time/rate) refilled at Limit and holding LimitBurst
	// requests, from which every request these rates apply to takes one; a
	// request that finds it empty is answered 503 SlowDown, counted as a
	// SlowDown fault, and takes nothing, so the requests forwarded never
	// exceed Limit per second (after the first burst) however fast a client
	// sends. Each Rates value with a limit (the base, each window) has its own
	// bucket, full when the plan is set; a request must pass every active one.
	// Unlike the other rates it is not merged: two limits both apply.
	Limit float64 `json:"limit,omitempty"`
	// LimitBurst is the bucket's size; zero means a tenth of a second's worth
	// of Limit, at least 1.
	LimitBurst int `json:"limit_burst,omitempty"`
	// Ops, if not empty, limits these rates to the named operations.
	Ops []Op `json:"ops,omitempty"`
}

func (r Rates) applies(op Op) bool {
	if len(r.Ops) == 0 {
		return true
	}
	for _, o := range r.Ops {
		if o == op {
			return true
		}
	}
	return false
}

// Zero reports whether r injects nothing.
func (r Rates) Zero() bool {
	return r.SlowDown == 0 && r.InternalError == 0 && r.ResetBefore == 0 && r.ResetAfter == 0 && r.ErrorIn200 == 0 && r.Latency == 0 && r.Limit <= 0
}

// burst is the size of the limit's token bucket.
func (r Rates) burst() int {
	if r.LimitBurst > 0 {
		return r.LimitBurst
	}
	return max(1, int(math.Ceil(r.Limit/10)))
}

// Window is a period, relative to Begin, during which its rates apply on top of
// the plan's base rates (each rate is the larger of the two; a limit applies
// besides the base's, if any).
type Window struct {
	Name  string        `json:"name"`
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	Rates Rates         `json:"rates"`
}

// Plan is what the proxy injects: base rates all the time, and windows.
type Plan struct {
	Base    Rates    `json:"base"`
	Windows []Window `json:"windows,omitempty"`
	// MaxFaults, if positive, stops injecting (latency aside, the limits'
	// SlowDowns included) after this many faults: "fail the first request" in
	// a unit test.
	MaxFaults int64 `json:"max_faults,omitempty"`
}

// overLimit takes a token, at now, from the bucket of every limit active at t
// for op, and reports whether one of them had none (then it takes none from
// any). buckets holds the buckets by source: -1 the base, i the i-th window.
func (p Plan) overLimit(op Op, t time.Duration, now time.Time, buckets map[int]*rate.Limiter) bool {
	var taken []*rate.Reservation
	refuse := false
	try := func(i int, r Rates) {
		if refuse || r.Limit <= 0 || !r.applies(op) {
			return
		}
		b := buckets[i]
		if b == nil {
			b = rate.NewLimiter(rate.Limit(r.Limit), r.burst())
			buckets[i] = b
		}
		res := b.ReserveN(now, 1)
		if !res.OK() || res.DelayFrom(now) > 0 {
			res.CancelAt(now)
			refuse = true
			return
		}
		taken = append(taken, res)
	}
	try(-1, p.Base)
	for i, w := range p.Windows {
		if t >= w.Start && t < w.End {
			try(i, w.Rates)
		}
	}
	if refuse {
		for _, res := range taken {
			res.CancelAt(now)
		}
	}
	return refuse
}

// effective combines the base rates and every window active at t for op.
func (p Plan) effective(op Op, t time.Duration) Rates {
	var e Rates
	merge := func(r Rates) {
		if !r.applies(op) {
			return
		}
		e.SlowDown = max(e.SlowDown, r.SlowDown)
		e.InternalError = max(e.InternalError, r.InternalError)
		e.ResetBefore = max(e.ResetBefore, r.ResetBefore)
		e.ResetAfter = max(e.ResetAfter, r.ResetAfter)
		e.ErrorIn200 = max(e.ErrorIn200, r.ErrorIn200)
		if r.Latency > e.Latency {
			e.Latency, e.LatencyMin, e.LatencyMax = r.Latency, r.LatencyMin, r.LatencyMax
		}
	}
	merge(p.Base)
	for _, w := range p.Windows {
		if t >= w.Start && t < w.End {
			merge(w.Rates)
		}
	}
	return e
}

// Proxy is the fault-injecting reverse proxy.
type Proxy struct {
	upstream *url.URL
	rp       *httputil.ReverseProxy

	mu      sync.Mutex
	rng     *mrand.Rand
	plan    Plan
	buckets map[int]*rate.Limiter // the plan's limits (Plan.overLimit)
	enabled bool
	begin   time.Time
	ops     map[Op]int64
	faults  map[Fault]int64
	byOp    map[Op]map[Fault]int64

	srv *http.Server
	ln  net.Listener
}

// New returns a proxy to upstream (an S3 endpoint such as
// http://127.0.0.1:7070) that injects plan, drawing from a generator seeded
// with seed. It does not listen until Start; it is also an http.Handler.
func New(upstream string, plan Plan, seed uint64) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: upstream %q: want http://host:port", upstream)
	}
	p := &Proxy{
		upstream: u,
		rng:      mrand.New(mrand.NewPCG(seed, 0x5f3759df)),
		plan:     plan,
		buckets:  map[int]*rate.Limiter{},
		enabled:  true,
		begin:    time.Now(),
		ops:      map[Op]int64{},
		faults:   map[Fault]int64{},
		byOp:     map[Op]map[Fault]int64{},
	}
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// SigV4 signs the Host header: keep the one the client signed.
			pr.Out.Host = pr.In.Host
		},
		Transport: transport,
		ErrorLog:  nil,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The server is unreachable: answer as a gateway would.
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return p, nil
}

// Start listens on addr (127.0.0.1:0 picks a port) and serves until Close.
func (p *Proxy) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("faultproxy: listen %s: %w", addr, err)
	}
	p.ln = ln
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return nil
}

// URL is the proxy's endpoint, to use as AWS_ENDPOINT_URL_S3.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops listening and closes every connection.
func (p *Proxy) Close() error {
	if p.srv == nil {
		return nil
	}
	return p.srv.Close()
}

// Begin restarts the clock that windows are timed against.
func (p *Proxy) Begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.begin = time.Now()
}

// SetPlan replaces the plan; its limits start with full buckets.
func (p *Proxy) SetPlan(plan Plan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan = plan
	p.buckets = map[int]*rate.Limiter{}
}

// SetEnabled turns injection on or off (off: a plain proxy that still counts).
func (p *Proxy) SetEnabled(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enabled = on
}

// Counts are what the proxy saw and did.
type Counts struct {
	Requests map[Op]int64           `json:"requests"`
	Faults   map[Fault]int64        `json:"faults"`
	ByOp     map[Op]map[Fault]int64 `json:"faults_by_op"`
}

// Total is the number of requests.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c.Requests {
		n += v
	}
	return n
}

// Forwarded is the number of requests that reached the server: the requests
// less those answered by the proxy itself (SlowDown, InternalError,
// ResetBefore, ErrorIn200). ResetAfter's were forwarded.
func (c Counts) Forwarded() int64 {
	return c.Total() - c.Faults[SlowDown] - c.Faults[InternalError] - c.Faults[ResetBefore] - c.Faults[ErrorIn200]
}

// TotalFaults is the number of faults injected.
func (c Counts) TotalFaults() int64 {
	var n int64
	for _, v := range c.Faults {
		n += v
	}
	return n
}

// String lists the requests by operation, busiest first.
func (c Counts) String() string {
	type kv struct {
		op Op
		n  int64
	}
	var all []kv
	for op, n := range c.Requests {
		all = append(all, kv{op, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || (all[i].n == all[j].n && all[i].op < all[j].op) })
	var b strings.Builder
	for i, e := range all {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", e.op, e.n)
	}
	return b.String()
}

// Counts returns a copy of the counters.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := Counts{Requests: map[Op]int64{}, Faults: map[Fault]int64{}, ByOp: map[Op]map[Fault]int64{}}
	for k, v := range p.ops {
		c.Requests[k] = v
	}
	for k, v := range p.faults {
		c.Faults[k] = v
	}
	for op, m := range p.byOp {
		c.ByOp[op] = map[Fault]int64{}
		for k, v := range m {
			c.ByOp[op][k] = v
		}
	}
	return c
}

// decision is what happens to one request.
type decision struct {
	delay  time.Duration
	before Fault // SlowDown, InternalError, ResetBefore, ErrorIn200 or ""
	after  bool  // ResetAfter
}

func (p *Proxy) decide(op Op) decision {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ops[op]++
	if !p.enabled {
		return decision{}
	}
	now := time.Now()
	t := now.Sub(p.begin)
	r := p.plan.effective(op, t)
	var d decision
	if r.Latency > 0 && p.rng.Float64() < r.Latency {
		d.delay = r.LatencyMin
		if r.LatencyMax > r.LatencyMin {
			d.delay += time.Duration(p.rng.Int64N(int64(r.LatencyMax - r.LatencyMin)))
		}
		p.count(op, Latency)
	}
	if p.plan.MaxFaults > 0 && p.injected() >= p.plan.MaxFaults {
		return d
	}
	if p.plan.overLimit(op, t, now, p.buckets) {
		d.before = SlowDown
		p.count(op, SlowDown)
		return d
	}
	x := p.rng.Float64()
	for _, c := range []struct {
		f    Fault
		rate float64
	}{{SlowDown, r.SlowDown}, {InternalError, r.InternalError}, {ResetBefore, r.ResetBefore}, {ErrorIn200, r.ErrorIn200}} {
		if c.f == ErrorIn200 && !op.CanFailIn200() {
			continue
		}
		if x < c.rate {
			d.before = c.f
			p.count(op, c.f)
			return d
		}
		x -= c.rate
	}
	if r.ResetAfter > 0 && p.rng.Float64() < r.ResetAfter && (p.plan.MaxFaults <= 0 || p.injected() < p.plan.MaxFaults) {
		d.after = true
		p.count(op, ResetAfter)
	}
	return d
}

// injected counts the faults other than latency; the caller holds mu.
func (p *Proxy) injected() int64 {
	var n int64
	for f, v := range p.faults {
		if f != Latency {
			n += v
		}
	}
	return n
}

func (p *Proxy) count(op Op, f Fault) {
	p.faults[f]++
	m := p.byOp[op]
	if m == nil {
		m = map[Fault]int64{}
		p.byOp[op] = m
	}
	m[f]++
}

// ServeHTTP forwards r, or fails it as the plan says.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := Classify(r)
	d := p.decide(op)
	if d.delay > 0 {
		select {
		case <-time.After(d.delay):
		case <-r.Context().Done():
			return
		}
	}
	switch d.before {
	case SlowDown:
		drain(r)
		writeError(w, r, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
		return
	case InternalError:
		drain(r)
		writeError(w, r, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
		return
	case ErrorIn200:
		drain(r)
		writeError(w, r, http.StatusOK, "InternalError", "We encountered an internal error. Please try again.")
		return
	case ResetBefore:
		drain(r)
		reset(w)
		return
	}
	if d.after {
		// Let the server execute the request, then lose its answer.
		rec := &discard{h: http.Header{}}
		p.rp.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
		reset(w)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// drain reads what is left of a request body so that the connection can be
// reused for the client's retry.
func drain(r *http.Request) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
	}
}

// reset closes the client's connection with a TCP RST (SO_LINGER 0).
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// writeError answers with S3's error document.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	id := requestID()
	w.Header().Set("x-amz-request-id", id)
	if r.Method == http.MethodHead {
		// S3 sends no body with a HEAD answer; the status is all a client sees.
		w.WriteHeader(status)
		return
	}
	resource := r.URL.Path
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>%s</RequestId><HostId>faultproxy</HostId></Error>`,
		code, msg, xmlEscape(resource), id)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}

func requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// discard is a ResponseWriter that forgets the answer.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}
