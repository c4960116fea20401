package worker_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/worker"
)

// roundTripLatency is added to every S3 request the round-trip test counts:
// far above what Postgres or the local server add, so that requests sent
// together arrive within a small part of it and the next round trip's
// requests a whole latency later. 400 ms, not 200: in a CI run's MinIO pass
// (packages tested in parallel on two cores) four copies sent at once on the
// careful path arrived as two pairs more than 100 ms apart, and were counted
// as two round trips; requests really sent in turn are still a whole latency
// apart, so the wider margin hides no extra round trip. 800 ms, not 400: the
// same four copies (destination read first, no animation) arrived as two
// pairs more than 200 ms apart in another CI run's MinIO pass (each copy waits
// for its own pin's ledger write, and two cores running several packages'
// tests can hold such a write that long); half a latency either way is still
// the margin, now 400 ms.
const roundTripLatency = 800 * time.Millisecond

// arrival is one S3 request as the latency proxy saw it arrive.
type arrival struct {
	at time.Time
	op faultproxy.Op
}

// latencyProxy forwards to upstream after roundTripLatency, once on, and
// records when each request arrived.
type latencyProxy struct {
	on       atomic.Bool
	mu       sync.Mutex
	arrivals []arrival
}

func (p *latencyProxy) start(t *testing.T, upstream string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(upstream)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.on.Load() {
			p.mu.Lock()
			p.arrivals = append(p.arrivals, arrival{at: time.Now(), op: faultproxy.Classify(r)})
			p.mu.Unlock()
			time.Sleep(roundTripLatency)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// waves groups the recorded requests into round trips: a request that
// arrives more than half a latency after the one before starts a new one.
func (p *latencyProxy) waves() [][]faultproxy.Op {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := append([]arrival(nil), p.arrivals...)
	sort.Slice(a, func(i, j int) bool { return a[i].at.Before(a[j].at) })
	var out [][]faultproxy.Op
	for i, r := range a {
		if i == 0 || r.at.Sub(a[i-1].at) > roundTripLatency/2 {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], r.op)
	}
	return out
}

// TestAPhotoTakesTheRoundTripsItShould counts the S3 round trips of one
// photo's migration with roundTripLatency (800 ms) added to every request: a worker far from S3
// waits for each round trip in turn, so their number, not the number of
// requests, sets a photo's latency (issue 20). On the copy-first path the
// objects the row names (the three columns') are copied in the same round
// trip as the listing of the photo's animations and the HEAD of the object
// the layout names (its metadata); in a second, the metadata's copy pinned
// to that HEAD, with any animation the listing found; then every other
// source is read at once (the read that proves each copy made first, and the
// recheck; without animations, in the second round trip, with the
// metadata's copy), then the swap: two round trips for a photo without
// animations, three with. Where the server does not enforce If-None-Match on
// CopyObject, each destination is read first, one round trip before its
// copy: the named objects' with the listing, the metadata's (once its HEAD
// found it) and the animations' beside the named copies, so one round trip
// more, and no HEAD of the destination of a metadata that does not exist. A
// request made in turn instead of at once (one more round trip) fails it.
func TestAPhotoTakesTheRoundTripsItShould(t *testing.T) {
	for _, tc := range []struct {
		name       string
		enforced   bool
		animations bool
		want       [][]faultproxy.Op
	}{
		{"conditional copies enforced", true, true, [][]faultproxy.Op{
			append(repeat(faultproxy.OpCopyObject, 3), faultproxy.OpHeadObject, faultproxy.OpListObjectsV2),
			repeat(faultproxy.OpCopyObject, 2),
			repeat(faultproxy.OpHeadObject, 4),
		}},
		{"conditional copies enforced, no animation", true, false, [][]faultproxy.Op{
			append(repeat(faultproxy.OpCopyObject, 3), faultproxy.OpHeadObject, faultproxy.OpListObjectsV2),
			append(repeat(faultproxy.OpHeadObject, 3), faultproxy.OpCopyObject),
		}},
		{"destination read first", false, true, [][]faultproxy.Op{
			append(repeat(faultproxy.OpHeadObject, 4), faultproxy.OpListObjectsV2),
			append(repeat(faultproxy.OpCopyObject, 3), faultproxy.OpHeadObject, faultproxy.OpHeadObject),
			repeat(faultproxy.OpCopyObject, 2),
			repeat(faultproxy.OpHeadObject, 4),
		}},
		{"destination read first, no animation", false, false, [][]faultproxy.Op{
			append(repeat(faultproxy.OpHeadObject, 4), faultproxy.OpListObjectsV2),
			append(repeat(faultproxy.OpCopyObject, 3), faultproxy.OpHeadObject),
			append(repeat(faultproxy.OpHeadObject, 3), faultproxy.OpCopyObject),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, testenv.Options{})
			upstream := os.Getenv("AWS_ENDPOINT_URL_S3")
			if tc.enforced {
				srv, _ := enforcingProxy(t, b)
				upstream = srv.URL
			}
			lp := &latencyProxy{}
			srv := lp.start(t, upstream)
			client := s3.NewFromConfig(b.env.AWS, func(o *s3.Options) {
				o.BaseEndpoint = aws.String(srv.URL)
				o.UsePathStyle = true
			})
			objects := objstore.New(client, b.env.Objects.Bucket(), objstore.Options{})
			run := func() { b.drain(worker.New(b.env.Store, objects, b.env.Queue, b.env.DLQ, b.log, cfg())) }
			run() // the fleet's one probe of the server, without latency
			require.Equal(t, tc.enforced, objects.ConditionalCopy(), "the probe found what the server enforces")

			f := b.legacyPhotoWith(true, tc.animations)
			b.send(f.ID, "run-1")
			lp.on.Store(true)
			run()
			lp.on.Store(false)
			b.requireMigrated(f)

			got := lp.waves()
			sortWaves(got)
			t.Logf("round trips: %s", describeWaves(got))
			want := tc.want
			n := len(f.legacyKeys())
			switch caps := objects.Capabilities(); {
			case !caps.CopyKeepsHeaders:
				t.Skip("the server may drop headers on a copy: copy first is off and each copy is read back")
			case caps.ACLs:
				// Copy first is off where the bucket keeps ACLs (MinIO): the
				// careful path, the metadata's HEAD with the listing, the
				// other reads at once, then the copies, then the rechecks.
				reads := append(repeat(faultproxy.OpGetObjectAcl, n), repeat(faultproxy.OpHeadObject, n-1)...)
				if !tc.enforced {
					reads = append(reads, repeat(faultproxy.OpHeadObject, n)...)
				}
				want = [][]faultproxy.Op{{faultproxy.OpHeadObject, faultproxy.OpListObjectsV2}, reads,
					repeat(faultproxy.OpCopyObject, n), repeat(faultproxy.OpHeadObject, n)}
			}
			sortWaves(want)
			require.Equal(t, want, got, "round trips, each with the requests sent at once in it: %s", describeWaves(got))
		})
	}
}

func sortWaves(waves [][]faultproxy.Op) {
	for _, w := range waves {
		sort.Slice(w, func(i, j int) bool { return w[i] < w[j] })
	}
}

func repeat(op faultproxy.Op, n int) []faultproxy.Op {
	out := make([]faultproxy.Op, n)
	for i := range out {
		out[i] = op
	}
	return out
}

func describeWaves(w [][]faultproxy.Op) string {
	parts := make([]string, len(w))
	for i, ops := range w {
		counts := map[faultproxy.Op]int{}
		for _, op := range ops {
			counts[op]++
		}
		var s []string
		for op, n := range counts {
			s = append(s, fmt.Sprintf("%s×%d", op, n))
		}
		sort.Strings(s)
		parts[i] = fmt.Sprintf("%d: %s", i+1, strings.Join(s, " "))
	}
	return fmt.Sprintf("%d [%s]", len(w), strings.Join(parts, "; "))
}
