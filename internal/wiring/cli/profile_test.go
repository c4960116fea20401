package cli

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var retained [][]byte

//go:noinline
func allocateForHeapProfileTest() {
	for range 64 {
		retained = append(retained, make([]byte, 1<<20))
	}
}

// The profile left at the end is one taken after the heap grew: it names
// what grew it (written again at each new high, not only at the start).
func TestThePeakHeapProfileNamesWhatGrewTheHeap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heap.prof")
	stop, err := StartPeakHeapProfile(path, 20*time.Millisecond)
	require.NoError(t, err)
	allocateForHeapProfileTest()
	time.Sleep(200 * time.Millisecond)
	stop()
	retained = nil

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	z, err := gzip.NewReader(f) // a pprof profile is gzipped protobuf
	require.NoError(t, err)
	body, err := io.ReadAll(z)
	require.NoError(t, err)
	require.True(t, bytes.Contains(body, []byte("allocateForHeapProfileTest")), "the profile names the function that grew the heap")
}

func TestThePeakHeapProfileSaysWhenItCannotWrite(t *testing.T) {
	_, err := StartPeakHeapProfile(filepath.Join(t.TempDir(), "missing", "heap.prof"), time.Second)
	require.ErrorContains(t, err, "heap profile")
}
