package cli

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// StartCPUProfile writes a Go CPU profile to path until stop (the worker's
// hidden --cpu-profile, migratectl's KEYMIGRATE_CPU_PROFILE: for
// performance work, docs/performance.md and docs/scale.md).
func StartCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// StartPeakHeapProfile watches the process's heap every interval and, each
// time the heap in use reaches a new high, writes a Go heap profile to path
// (replacing the last): at the end path holds the heap near its peak, which
// says what a command's peak memory is made of (migratectl's
// KEYMIGRATE_HEAP_PROFILE, for make scale-bench; docs/scale.md). stop writes
// once more if the heap is higher then, and ends the watch.
func StartPeakHeapProfile(path string, interval time.Duration) (stop func(), err error) {
	if err := writeHeapProfile(path); err != nil { // the path is writable, or say so now
		return nil, err
	}
	var peak uint64
	check := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if m.HeapInuse > peak {
			peak = m.HeapInuse
			_ = writeHeapProfile(path) // best effort: a profile, not the command's work
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				check()
				return
			case <-t.C:
				check()
			}
		}
	}()
	return func() { close(done); <-finished }, nil
}

func writeHeapProfile(path string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return os.Rename(tmp, path)
}
