package synths3

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Options configure the endpoint.
type Options struct {
	// Bucket is the only bucket it serves (default "synthetic").
	Bucket string
	// Mode is which objects exist at the start.
	Mode Mode
	// Latency is added to every request before it is answered (for
	// measurements of latency-bound phases).
	Latency time.Duration
	// MaxExtras bounds the objects outside the keyspace it holds (default
	// 100,000): the probe's, plan's calibration copies, a test's.
	MaxExtras int
	// MaxBody bounds a PutObject's body (default 8 MiB).
	MaxBody int64
}

// Server is the synthetic S3 endpoint: an http.Handler that answers the S3
// REST API, path-style, for a Keyspace, without storing its bytes. Any
// credentials are accepted; nothing is signed or checked.
type Server struct {
	ks    *Keyspace
	opts  Options
	state *state
	stats stats
	reqID atomic.Int64
	// scanBudget is scanBudget but in tests.
	scanBudget int

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

// NewServer builds the endpoint for ks.
func NewServer(ks *Keyspace, o Options) *Server {
	if o.Bucket == "" {
		o.Bucket = "synthetic"
	}
	if o.MaxExtras <= 0 {
		o.MaxExtras = 100_000
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 8 << 20
	}
	return &Server{ks: ks, opts: o, state: newState(ks.Photos(), o.Mode, o.MaxExtras), stats: newStats(), scanBudget: scanBudget}
}

// Keyspace is the keyspace served.
func (s *Server) Keyspace() *Keyspace { return s.ks }

// Bucket is the bucket's name.
func (s *Server) Bucket() string { return s.opts.Bucket }

// Start listens on addr (127.0.0.1:PORT, PORT below 32768; port 0 picks a
// free one) and serves
// until Close. It returns the endpoint's URL, for the SDK's BaseEndpoint
// (or AWS_ENDPOINT_URL_S3).
func (s *Server) Start(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("synthetic S3 endpoint address %q: %w", addr, err)
	}
	if host != "127.0.0.1" {
		return "", fmt.Errorf("synthetic S3 endpoint address %q: bind 127.0.0.1 only", addr)
	}
	// Ports from 32768 up are the kernel's for outgoing connections.
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p >= 32768 {
		return "", fmt.Errorf("synthetic S3 endpoint address %q: give a port below 32768, or 0 for a free one", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen for the synthetic S3 endpoint: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	srv := s.srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Close stops serving.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// Capabilities are what the endpoint enforces, as AWS S3 does for a bucket
// with ACLs disabled (BucketOwnerEnforced): conditional copies, conditional
// deletes and batch deletes, copies that keep every header; objstore.Probe
// finds exactly these (a test checks it). The loader records them in the
// ledger, as the fleet's first worker would have.
func Capabilities() objstore.Capabilities {
	return objstore.Capabilities{ConditionalCopy: true, ConditionalDelete: true, ConditionalBatchDelete: true, CopyKeepsHeaders: true, ACLs: false}
}

// Remove makes key vanish, as if someone else deleted it, without counting
// a request. It reports whether the object existed.
func (s *Server) Remove(key string) bool {
	if a, sl, user, ok := s.ks.locate(key); ok {
		mu := s.state.lock(a)
		mu.Lock()
		defer mu.Unlock()
		was := s.state.present(a, sl, user)
		s.state.setPresent(a, sl, user, false)
		return was
	}
	ok, _ := s.state.extras.remove(key, func(*extra) error { return nil })
	return ok
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/__stats" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
		return
	}
	if s.opts.Latency > 0 {
		t := time.NewTimer(s.opts.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	op := operation(r)
	s.stats.count(op)
	w.Header().Set("x-amz-request-id", strconv.FormatInt(s.reqID.Add(1), 16))
	w.Header().Set("Server", "synths3")
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if bucket != s.opts.Bucket {
		s.fail(w, r, op, s3Error{http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist", ""})
		return
	}
	var err error
	switch op {
	case "HeadBucket":
		w.Header().Set("x-amz-bucket-region", "us-east-1")
		w.WriteHeader(http.StatusOK)
	case "CreateBucket":
		w.WriteHeader(http.StatusOK) // us-east-1 answers 200 to its owner
	case "GetBucketOwnershipControls":
		writeXML(w, http.StatusOK, ownershipControls{NS: s3NS, Rules: []ownershipRule{{ObjectOwnership: "BucketOwnerEnforced"}}})
	case "ListObjectsV2":
		err = s.listObjectsV2(w, r)
	case "HeadObject":
		err = s.headObject(w, r, key, false)
	case "GetObject":
		err = s.headObject(w, r, key, true)
	case "PutObject":
		err = s.putObject(w, r, key)
	case "CopyObject":
		err = s.copyObject(w, r, key)
	case "DeleteObject":
		err = s.deleteObject(w, r, key)
	case "DeleteObjects":
		err = s.deleteObjects(w, r)
	case "GetObjectAcl":
		err = s.getObjectACL(w, key)
	default:
		err = notImplemented(op)
	}
	if err != nil {
		s.fail(w, r, op, err)
	}
}

// operation names the S3 operation of a request: faultproxy.Classify's name,
// refined for the bucket subresources the endpoint tells apart.
func operation(r *http.Request) string {
	op := faultproxy.Classify(r)
	if op != faultproxy.OpGetBucketConfig && op != faultproxy.OpPutBucketConfig {
		return string(op)
	}
	q := r.URL.Query()
	if op == faultproxy.OpGetBucketConfig {
		if _, ok := q["ownershipControls"]; ok {
			return "GetBucketOwnershipControls"
		}
	}
	var names []string
	for k := range q {
		if k != "x-id" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return string(op) + "?" + strings.Join(names, "&")
}

// s3Error is an S3 error response.
type s3Error struct {
	status  int
	code    string
	message string
	key     string
}

func (e s3Error) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func notImplemented(what string) error {
	return s3Error{http.StatusNotImplemented, "NotImplemented", "synths3 does not implement " + what, ""}
}

func noSuchKey(key string) error {
	return s3Error{http.StatusNotFound, "NoSuchKey", "The specified key does not exist.", key}
}

func preconditionFailed(key string) error {
	return s3Error{http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", key}
}

type errorDoc struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Key       string   `xml:"Key,omitempty"`
	RequestID string   `xml:"RequestId"`
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	var e s3Error
	if !errors.As(err, &e) {
		e = s3Error{http.StatusInternalServerError, "InternalError", err.Error(), ""}
	}
	if e.code == "NotImplemented" {
		s.stats.notImplemented(op, e.message)
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(e.status)
		return
	}
	writeXML(w, e.status, errorDoc{Code: e.code, Message: e.message, Key: e.key, RequestID: w.Header().Get("x-amz-request-id")})
}

const s3NS = "http://s3.amazonaws.com/doc/2006-03-01/"

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(b)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(b)
}

type ownershipControls struct {
	XMLName xml.Name        `xml:"OwnershipControls"`
	NS      string          `xml:"xmlns,attr"`
	Rules   []ownershipRule `xml:"Rule"`
}

type ownershipRule struct {
	ObjectOwnership string `xml:"ObjectOwnership"`
}

// stats counts requests by operation.
type stats struct {
	mu    sync.Mutex
	ops   map[string]*atomic.Int64
	unimp map[string]string
	total atomic.Int64
}

func newStats() stats { return stats{ops: map[string]*atomic.Int64{}, unimp: map[string]string{}} }

func (st *stats) count(op string) {
	st.total.Add(1)
	st.mu.Lock()
	c, ok := st.ops[op]
	if !ok {
		c = &atomic.Int64{}
		st.ops[op] = c
	}
	st.mu.Unlock()
	c.Add(1)
}

func (st *stats) notImplemented(op, why string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.unimp[op] = why
}

// Stats is a snapshot of the requests answered.
type Stats struct {
	// Requests counts requests by S3 operation name (HeadObject,
	// ListObjectsV2, CopyObject, …), including refused ones.
	Requests map[string]int64 `json:"requests"`
	Total    int64            `json:"total"`
	// NotImplemented names each operation answered 501, with why.
	NotImplemented map[string]string `json:"not_implemented"`
}

// Stats returns the counts so far (also served as JSON at /__stats).
func (s *Server) Stats() Stats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	out := Stats{Requests: map[string]int64{}, Total: s.stats.total.Load(), NotImplemented: map[string]string{}}
	for op, c := range s.stats.ops {
		out.Requests[op] = c.Load()
	}
	for op, why := range s.stats.unimp {
		out.NotImplemented[op] = why
	}
	return out
}

// ResetStats sets every count to zero (between the phases of a bench).
func (s *Server) ResetStats() {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	s.stats.ops = map[string]*atomic.Int64{}
	s.stats.unimp = map[string]string{}
	s.stats.total.Store(0)
}
