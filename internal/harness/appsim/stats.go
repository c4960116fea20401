package appsim

import (
	"errors"
	"sort"
	"sync"
	"time"
)

// Stats counts what the simulator did and saw. It is safe for concurrent use.
type Stats struct {
	mu        sync.Mutex
	ops       map[Op]*OpCount
	notes     map[string]int64
	verdicts  map[Verdict]int64
	final     map[Verdict]int64
	retried   int64
	latencies map[string][]time.Duration
	bad       []ReadResult
	proxied   map[string]*ProxiedCount
}

// ProxiedCount is what the application's clients behind the S3 fault proxy
// (proxied.go) did of one kind: reads ("read", "presigned_read",
// "listing") answered or unavailable after retries; writes (by operation)
// done, failed, and of the failed ones those that had landed (settled by
// reading the key back) and those that had not.
type ProxiedCount struct {
	Done        int64 `json:"done"`
	Unavailable int64 `json:"unavailable_after_retries,omitempty"`
	Failed      int64 `json:"failed,omitempty"`
	Landed      int64 `json:"failed_but_landed,omitempty"`
}

// OpCount is how often an operation was done, failed, or had nothing to act on.
type OpCount struct {
	Done    int64  `json:"done"`
	Failed  int64  `json:"failed"`
	Skipped int64  `json:"skipped"`
	LastErr string `json:"last_error,omitempty"`
}

func newStats() *Stats {
	return &Stats{proxied: map[string]*ProxiedCount{}, ops: map[Op]*OpCount{}, notes: map[string]int64{}, verdicts: map[Verdict]int64{}, final: map[Verdict]int64{}, latencies: map[string][]time.Duration{}}
}

const maxBadReads = 200

func (s *Stats) op(op Op, done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.ops[op]
	if c == nil {
		c = &OpCount{}
		s.ops[op] = c
	}
	switch {
	case err != nil:
		c.Failed++
		c.LastErr = err.Error()
	case done:
		c.Done++
	default:
		c.Skipped++
	}
}

// proxiedKind counts one proxied read of kind (locked by the caller).
func (s *Stats) proxiedRead(kind string, v Verdict) {
	c := s.proxied[kind]
	if c == nil {
		c = &ProxiedCount{}
		s.proxied[kind] = c
	}
	if v == ReadUnavailable {
		c.Unavailable++
	} else {
		c.Done++
	}
}

// proxiedWrites are the operations a proxied writer makes through the fault
// proxy (proxied.go).
var proxiedWrites = map[Op]bool{OpCreate: true, OpCreatePresigned: true, OpRewriteLegacy: true, OpRewriteUser: true, OpAddAnimation: true, OpRewriteAnim: true}

// proxiedWrite counts one write of a proxied writer.
func (s *Stats) proxiedWrite(op Op, done bool, err error) {
	if !done && err == nil {
		return // nothing to act on
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.proxied["write:"+string(op)]
	if c == nil {
		c = &ProxiedCount{}
		s.proxied["write:"+string(op)] = c
	}
	switch {
	case err != nil && errors.Is(err, errLanded):
		c.Failed++
		c.Landed++
	case err != nil:
		c.Failed++
	default:
		c.Done++
	}
}

func (s *Stats) note(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes[what]++
}

func (s *Stats) read(phase string, r ReadResult, final bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if final {
		s.final[r.Verdict]++
	} else {
		s.verdicts[r.Verdict]++
		if len(s.latencies[phase]) < 1_000_000 {
			s.latencies[phase] = append(s.latencies[phase], r.Latency)
		}
	}
	if r.Retried {
		s.retried++
	}
	if r.Presigned {
		s.notes["read_through_a_presigned_url"]++
	}
	if r.Proxied && !final {
		kind := "read"
		if r.Presigned {
			kind = "presigned_read"
		}
		s.proxiedRead(kind, r.Verdict)
	}
	if !r.Verdict.Good() && len(s.bad) < maxBadReads {
		s.bad = append(s.bad, r)
	}
}

// listed counts one judged listing read (listing.go): its verdict among the
// reads', not its latency.
func (s *Stats) listed(r ReadResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verdicts[r.Verdict]++
	s.notes["listing_read"]++
	if r.Proxied {
		s.proxiedRead("listing", r.Verdict)
	}
	if !r.Verdict.Good() && len(s.bad) < maxBadReads {
		s.bad = append(s.bad, r)
	}
}

// Summary is a copy of the counters.
type Summary struct {
	Ops      map[Op]OpCount     `json:"ops"`
	Notes    map[string]int64   `json:"notes,omitempty"`
	Reads    map[Verdict]int64  `json:"reads"`
	Final    map[Verdict]int64  `json:"final_reads"`
	Retried  int64              `json:"reads_retried"`
	Latency  map[string]Latency `json:"read_latency"`
	BadReads []ReadResult       `json:"bad_reads,omitempty"`
	// Proxied is what the clients behind the S3 fault proxy did, by kind
	// (ProxiedCount).
	Proxied map[string]ProxiedCount `json:"through_fault_proxy,omitempty"`
}

// Latency summarises the read latencies of one phase.
type Latency struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50"`
	P99   time.Duration `json:"p99"`
}

// Summary copies the counters.
func (s *Stats) Summary() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Summary{Ops: map[Op]OpCount{}, Notes: map[string]int64{}, Reads: map[Verdict]int64{}, Final: map[Verdict]int64{}, Retried: s.retried, Latency: map[string]Latency{}}
	for k, v := range s.ops {
		out.Ops[k] = *v
	}
	for k, v := range s.notes {
		out.Notes[k] = v
	}
	for k, v := range s.verdicts {
		out.Reads[k] = v
	}
	for k, v := range s.final {
		out.Final[k] = v
	}
	for phase, l := range s.latencies {
		d := append([]time.Duration(nil), l...)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		lat := Latency{Count: len(d)}
		if len(d) > 0 {
			lat.P50 = d[len(d)*50/100]
			lat.P99 = d[min(len(d)-1, len(d)*99/100)]
		}
		out.Latency[phase] = lat
	}
	out.BadReads = append(out.BadReads, s.bad...)
	if len(s.proxied) > 0 {
		out.Proxied = map[string]ProxiedCount{}
		for k, v := range s.proxied {
			out.Proxied[k] = *v
		}
	}
	return out
}

// TotalReads is the number of reads during the run (final checks apart).
func (s Summary) TotalReads() int64 {
	var n int64
	for _, v := range s.Reads {
		n += v
	}
	return n
}
