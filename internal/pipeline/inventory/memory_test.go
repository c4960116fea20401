package inventory

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// EnvMemoryTest switches on TestReadingMemoryIsBounded, which writes and
// reads 10^6-row reports (about a minute here): too slow for every run.
const EnvMemoryTest = "KEYMIGRATE_INVENTORY_MEMORY"

// maxReadHeap is the bound the test holds the reader to: the live heap a
// read adds, whatever the report's size. A reader that parsed a CSV data file
// whole before yielding its records (the defect this test was checked
// against) added 133 MiB at 10^5 rows and 1,056 MiB at 10^6.
const maxReadHeap = 32 << 20

// TestReadingMemoryIsBounded measures the heap in use while a report of
// 10^5 and of 10^6 rows, in one data file, is read record by record (each
// record dropped at once, as a streaming caller does), sampling
// runtime.MemStats.HeapInuse every 2 ms. The heap a read adds must stay
// under maxReadHeap and must not grow with the report.
//
// Measured on this shared 2-core machine (KEYMIGRATE_INVENTORY_MEMORY=1 go
// test -run Memory -v ./internal/pipeline/inventory/), heap added while
// reading: CSV +4.0 MiB at 10^5 rows, +5.7 MiB at 10^6 (36.7 MiB of gzip);
// Parquet +7.6 MiB at 10^5, +6.1 MiB at 10^6 (48.4 MiB, 10 row groups of
// 100,000). docs/inventory.md has the full figures.
func TestReadingMemoryIsBounded(t *testing.T) {
	if testing.Short() || os.Getenv(EnvMemoryTest) == "" {
		t.Skipf("memory measurement: set %s=1 (and no -short) to run it", EnvMemoryTest)
	}
	for _, format := range []Format{FormatCSV, FormatParquet} {
		for _, rows := range []int{100_000, 1_000_000} {
			t.Run(string(format)+"/"+strconv.Itoa(rows), func(t *testing.T) {
				cfg := baseConfig(format)
				cfg.ObjectsPerFile = 0  // the default: 10^6 rows per data file
				cfg.RowsPerRowGroup = 0 // the default row group
				root := t.TempDir()
				start := time.Now()
				mp := writeGenerated(t, root, cfg, rows)
				wrote := time.Since(start)
				r := openLocal(t, mp)
				var size int64
				for _, f := range r.Files() {
					size += f.Size
				}

				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				base := ms.HeapInuse
				var peak atomic.Uint64
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					tick := time.NewTicker(2 * time.Millisecond)
					defer tick.Stop()
					var ms runtime.MemStats
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							runtime.ReadMemStats(&ms)
							if ms.HeapInuse > peak.Load() {
								peak.Store(ms.HeapInuse)
							}
						}
					}
				}()
				start = time.Now()
				n := 0
				var keyBytes int
				for o, err := range r.Objects(context.Background()) {
					require.NoError(t, err)
					n++
					keyBytes += len(o.Key)
				}
				read := time.Since(start)
				close(stop)
				<-done
				require.Equal(t, rows, n)
				added := int64(peak.Load()) - int64(base)
				t.Logf("%s %d rows, %d data file(s), %.1f MiB: written in %s, read in %s (%.0f rows/s); heap in use %.1f MiB before, peak %.1f MiB while reading (+%.1f MiB)",
					format, rows, len(r.Files()), float64(size)/(1<<20), wrote.Round(time.Millisecond), read.Round(time.Millisecond),
					float64(rows)/read.Seconds(), float64(base)/(1<<20), float64(peak.Load())/(1<<20), float64(added)/(1<<20))
				require.Less(t, added, int64(maxReadHeap), "reading must not hold the report in memory")
			})
		}
	}
}

// writeGenerated writes rows generated one at a time (never all in memory)
// and returns the manifest's path.
func writeGenerated(t testing.TB, root string, cfg Config, rows int) string {
	t.Helper()
	ctx := context.Background()
	cfg.TempDir = t.TempDir()
	w, err := NewWriter(NewDir(root), cfg)
	require.NoError(t, err)
	for i := range rows {
		require.NoError(t, w.Add(ctx, testObject(i)))
	}
	key, err := w.Close(ctx)
	require.NoError(t, err)
	return root + "/" + key
}
