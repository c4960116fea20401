package plan_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// syntheticBucket answers ListObjectsV2 for n photos' originals, thumbnails
// and metadata objects without holding them: the job id of photo i is derived
// from i so that keys sort in index order, and every page is computed. Every
// glacierEvery-th original is in GLACIER. It is how the planner is exercised
// on listings larger than the local S3 server holds, and where a storage
// class the local server ignores can be served.
type syntheticBucket struct {
	n, glacierEvery int
	requests        atomic.Int64
}

var syntheticPrefixes = map[string]string{"uploaded/": ".jpg", "thumbnails/": ".jpg", "meta/": ".json"}

func (b *syntheticBucket) job(i int) string {
	step := (1 << 32) / b.n
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i*step, i)
}

func (b *syntheticBucket) key(top string, i int) string {
	return top + b.job(i) + syntheticPrefixes[top]
}

func (b *syntheticBucket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	q := r.URL.Query()
	if q.Get("list-type") != "2" {
		http.Error(w, "only ListObjectsV2", http.StatusNotImplemented)
		return
	}
	prefix, after := q.Get("prefix"), q.Get("start-after")
	maxKeys := 1000
	if m, err := strconv.Atoi(q.Get("max-keys")); err == nil && m > 0 {
		maxKeys = m
	}
	type content struct {
		Key          string
		Size         int64
		ETag         string
		StorageClass string
		LastModified string
	}
	type result struct {
		XMLName               xml.Name `xml:"ListBucketResult"`
		Name                  string
		Prefix                string
		KeyCount              int
		MaxKeys               int
		IsTruncated           bool
		NextContinuationToken string `xml:",omitempty"`
		Contents              []content
	}
	res := result{Name: "synthetic", Prefix: prefix, MaxKeys: maxKeys}
	for top := range syntheticPrefixes {
		if !strings.HasPrefix(prefix, top) && !strings.HasPrefix(top, prefix) {
			continue
		}
		start := sort.Search(b.n, func(i int) bool { k := b.key(top, i); return k > after && k >= prefix })
		if t := q.Get("continuation-token"); t != "" {
			start, _ = strconv.Atoi(t)
		}
		for i := start; i < b.n && strings.HasPrefix(b.key(top, i), prefix); i++ {
			if len(res.Contents) == maxKeys {
				res.IsTruncated, res.NextContinuationToken = true, strconv.Itoa(i)
				break
			}
			sc := "STANDARD"
			if top == "uploaded/" && b.glacierEvery > 0 && i%b.glacierEvery == 0 {
				sc = "GLACIER"
			}
			res.Contents = append(res.Contents, content{Key: b.key(top, i), Size: int64(1000 + i%5000), ETag: `"e"`, StorageClass: sc, LastModified: "2024-01-01T00:00:00.000Z"})
		}
	}
	res.KeyCount = len(res.Contents)
	w.Header().Set("Content-Type", "application/xml")
	_ = xml.NewEncoder(w).Encode(res)
}

// syntheticPlan fills the test database with the photos rows of n synthetic
// photos and plans
// against the synthetic bucket.
func syntheticPlan(t *testing.T, n, glacierEvery int, measure func() func() heapPeaks) (*plan.Report, heapPeaks, time.Duration) {
	t.Helper()
	env := testenv.New(t, testenv.Options{})
	fake := &syntheticBucket{n: n, glacierEvery: glacierEvery}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	ctx := context.Background()
	i := 0
	_, err := env.Store.Pool().CopyFrom(ctx, pgx.Identifier{"photos"}, []string{"id", "owner_id", "original_key", "thumbnail_key"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			defer func() { i++ }()
			return []any{fmt.Sprintf("%08x-1111-4000-8000-%012x", i, i), fmt.Sprintf("%08x-2222-4000-8000-000000000000", i%1000),
				fake.key("uploaded/", i), fake.key("thumbnails/", i)}, nil
		}))
	require.NoError(t, err)
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(srv.URL), UsePathStyle: true, Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
	})
	objects := objstore.New(client, "synthetic", objstore.Options{})
	done := measure()
	start := time.Now()
	r, err := plan.Run(ctx, env.Store, objects, plan.Options{ListConcurrency: 16})
	elapsed := time.Since(start)
	peak := done()
	require.NoError(t, err)
	require.Equal(t, fake.requests.Load(), r.Listing.Requests)
	return r, peak, elapsed
}

// heapPeaks are the largest heap in use (live objects and garbage not yet
// collected) and the largest live heap (as of the last GC) seen.
type heapPeaks struct{ inUse, live uint64 }

// peakHeap samples the heap until the returned function is called.
func peakHeap() func() heapPeaks {
	runtime.GC()
	var mu sync.Mutex
	var peak heapPeaks
	stop := make(chan struct{})
	done := make(chan struct{})
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			metrics.Read(sample)
			mu.Lock()
			peak.inUse = max(peak.inUse, m.HeapInuse)
			peak.live = max(peak.live, sample[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() heapPeaks { close(stop); <-done; return peak }
}

func TestPlanOnASyntheticListingSeesArchiveClassesAndCountsEverything(t *testing.T) {
	t.Parallel()
	const n = 3000
	r, _, _ := syntheticPlan(t, n, 100, func() func() heapPeaks { return func() heapPeaks { return heapPeaks{} } })
	require.EqualValues(t, 3*n, r.Listing.Objects)
	require.EqualValues(t, n, r.Photos.ToMigrate)
	require.EqualValues(t, 3*n, r.Copies.Objects, "original, thumbnail and the job's metadata")
	archive := r.Problem("objects_in_archive_storage_classes")
	require.EqualValues(t, n/100, archive.Count)
	require.Equal(t, "GLACIER", archive.Examples[0].Detail)
	require.EqualValues(t, n/100, r.Listing.ByStorageClass["GLACIER"].Objects)
	require.Zero(t, r.Problem("orphans").Count)
	require.Zero(t, r.Problem("rows_pointing_at_missing_objects").Count)
}

// TestPlanMemoryIsFlat is a measurement, not part of the suite: set
// KEYMIGRATE_PLAN_MEASURE=1 (or the number of photos of the larger run). It
// plans two listings, one ten times the other, and checks that the live heap
// stays under a bound set by the configuration (pages in flight: 2 ×
// ListConcurrency queued for COPY and one per lister, the SDK's decoding of
// them), not by the data: the smaller run may not fill that pipeline, so the
// two peaks are logged, not compared.
func TestPlanMemoryIsFlat(t *testing.T) {
	if os.Getenv("KEYMIGRATE_PLAN_MEASURE") == "" {
		t.Skip("a measurement: set KEYMIGRATE_PLAN_MEASURE=1 (takes minutes)")
	}
	small, large := 30_000, 300_000
	if v, err := strconv.Atoi(os.Getenv("KEYMIGRATE_PLAN_MEASURE")); err == nil && v > 1 {
		large = v
		small = v / 10
	}
	for _, n := range []int{small, large} {
		r, peak, d := syntheticPlan(t, n, 0, peakHeap)
		t.Logf("%d photos, %d objects listed: peak live heap %.1f MiB, peak heap in use %.1f MiB, %s (%.0f objects/s); phases %v",
			n, r.Listing.Objects, float64(peak.live)/(1<<20), float64(peak.inUse)/(1<<20), d.Round(time.Millisecond), float64(r.Listing.Objects)/d.Seconds(), r.Phases)
		require.Less(t, peak.live, uint64(64<<20), "the live heap is bounded by the configuration, not the listing")
	}
}
