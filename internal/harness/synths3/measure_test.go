package synths3

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/dustin/go-humanize"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// The figures in docs/scale-harness.md, measured once on demand, never in
// the default test run:
//
//	KEYMIGRATE_SYNTHS3_MEASURE=1000000 go test -run Measure -v ./internal/harness/synths3/

func measurePhotos(t *testing.T) int64 {
	v := os.Getenv("KEYMIGRATE_SYNTHS3_MEASURE")
	if v == "" {
		t.Skip("a measurement: set KEYMIGRATE_SYNTHS3_MEASURE to a number of photos")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	require.NoError(t, err)
	return n
}

func TestMeasureTheFinishedLoad(t *testing.T) {
	n := measurePhotos(t)
	url := testenv.NewDatabase(t)
	ks, err := New(Config{Photos: n})
	require.NoError(t, err)
	start := time.Now()
	res, err := Load(context.Background(), url, ks, LoadOptions{State: FinishedState})
	require.NoError(t, err)
	wall := time.Since(start).Seconds()
	per := float64(n) / 1e6
	t.Logf("finished state, %d photos, %d object moves: %.1f s wall, %.1f s per 10^6 photos", res.Photos, res.ObjectMoves, wall, wall/per)
	for step, s := range res.Seconds {
		t.Logf("  %-16s %7.1f s", step, s)
	}
	c := connect(t, url)
	for _, table := range []string{"photos", "keymigrate.photo_moves", "keymigrate.object_moves"} {
		var size int64
		require.NoError(t, c.QueryRow(context.Background(), `SELECT pg_total_relation_size($1::regclass)`, table).Scan(&size))
		t.Logf("  %-24s %s (%s per photo)", table, humanize.IBytes(uint64(size)), humanize.IBytes(uint64(float64(size)/float64(n))))
	}
}

func TestMeasureTheEndpoint(t *testing.T) {
	n := measurePhotos(t)
	e := startEndpoint(t, Config{Photos: n}, Options{})
	ctx := context.Background()
	var keys []string
	for i := int64(0); i < 10_000; i++ {
		keys = append(keys, e.ks.Photo(i*(n/10_000)).OriginalKey)
	}
	const workers = 16
	rate := func(name string, fn func(k int) int) {
		var done, items atomic.Int64
		var wg sync.WaitGroup
		var mem runtime.MemStats
		start := time.Now()
		stop := start.Add(5 * time.Second)
		for w := range workers {
			wg.Go(func() {
				for k := w; time.Now().Before(stop); k += workers {
					items.Add(int64(fn(k)))
					done.Add(1)
				}
			})
		}
		wg.Wait()
		runtime.ReadMemStats(&mem)
		s := time.Since(start).Seconds()
		t.Logf("%s: %.0f requests/s, %.0f objects/s (%d goroutines, SDK client in the same process; heap %s)", name, float64(done.Load())/s, float64(items.Load())/s, workers, humanize.IBytes(mem.HeapAlloc))
	}
	rate("HeadObject", func(k int) int {
		_, err := e.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &e.bucket, Key: &keys[k%len(keys)]})
		require.NoError(t, err)
		return 1
	})
	tokens := make([]string, len(keylayout.LegacyPrefixes))
	var mu sync.Mutex
	rate("ListObjectsV2 (1,000 keys a page)", func(k int) int {
		p := k % len(keylayout.LegacyPrefixes)
		mu.Lock()
		tok := tokens[p]
		mu.Unlock()
		in := &s3.ListObjectsV2Input{Bucket: &e.bucket, Prefix: aws.String(keylayout.LegacyPrefixes[p])}
		if tok != "" {
			in.ContinuationToken = &tok
		}
		out, err := e.client.ListObjectsV2(ctx, in)
		require.NoError(t, err)
		mu.Lock()
		tokens[p] = aws.ToString(out.NextContinuationToken)
		mu.Unlock()
		return len(out.Contents)
	})
}
