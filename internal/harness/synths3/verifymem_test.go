package synths3

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// verify's memory does not grow with the ledger: the peak Go heap during a
// verify of the finished state, at each size of
// KEYMIGRATE_VERIFY_MEASURE (comma-separated numbers of photos), measured
// on demand, never in the default test run:
//
//	KEYMIGRATE_VERIFY_MEASURE=10000,100000 go test -run TestMeasureVerifyMemory -v ./internal/harness/synths3/
//
// The heap includes the endpoint's own state (two bits per object slot).
func TestMeasureVerifyMemory(t *testing.T) {
	v := os.Getenv("KEYMIGRATE_VERIFY_MEASURE")
	if v == "" {
		t.Skip("a measurement: set KEYMIGRATE_VERIFY_MEASURE to numbers of photos")
	}
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err)
		t.Run(s, func(t *testing.T) {
			l := load(t, Config{Photos: n}, FinishedState, LoadOptions{})
			ctx := context.Background()
			st := openLedger(t, l.url)
			objects := objstore.New(l.client, l.bucket, objstore.Options{})
			runtime.GC()
			var peak atomic.Uint64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				var m runtime.MemStats
				for {
					runtime.ReadMemStats(&m)
					if m.HeapInuse > peak.Load() {
						peak.Store(m.HeapInuse)
					}
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}()
			start := time.Now()
			rep, err := verify.Run(ctx, st, objects, verify.Options{Resume: true, Concurrency: 32})
			close(stop)
			<-done
			require.NoError(t, err)
			require.True(t, rep.OK(), "%+v", rep.Problems)
			wall := time.Since(start)
			t.Logf("%d photos: %d rows, %d moved objects, %d legacy objects listed, %d HEAD; %.1f s; peak heap %s",
				n, rep.RowsChecked, rep.ObjectsChecked, rep.ListedObjects, rep.Heads, wall.Seconds(), humanize.IBytes(peak.Load()))
		})
	}
}
