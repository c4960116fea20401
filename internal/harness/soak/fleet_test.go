package soak

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A mixed fleet starts the path with the fewest live workers (careful on a
// tie) and stops one of the most represented, so that careful workers are
// never fewer than copy-first ones and a fleet of one is careful: the
// shaped objects keep a careful worker to copy them in parts.
func TestMixedFleetKeepsItsMix(t *testing.T) {
	t.Parallel()
	f := NewMixedFleet(nil, 0, 0, []string{PathCareful, PathCopyFirst}, nil)
	live := func() map[string]int {
		m := map[string]int{}
		for _, w := range f.workers {
			m[w.path]++
		}
		return m
	}
	start := func() { f.workers = append(f.workers, &proc{path: f.nextPath()}) }
	stop := func() { i := f.surplus(); f.workers = append(f.workers[:i], f.workers[i+1:]...) }

	start()
	require.Equal(t, map[string]int{PathCareful: 1}, live(), "a fleet of one is careful")
	start()
	require.Equal(t, map[string]int{PathCareful: 1, PathCopyFirst: 1}, live())
	start()
	require.Equal(t, map[string]int{PathCareful: 2, PathCopyFirst: 1}, live())
	start()
	require.Equal(t, map[string]int{PathCareful: 2, PathCopyFirst: 2}, live())
	stop()
	require.Equal(t, map[string]int{PathCareful: 2, PathCopyFirst: 1}, live())
	stop()
	require.Equal(t, map[string]int{PathCareful: 1, PathCopyFirst: 1}, live())
	stop()
	require.Equal(t, map[string]int{PathCareful: 1}, live(), "scaled down to one, the fleet keeps its careful worker")

	// A careful worker killed is replaced by a careful one.
	start()
	f.workers = f.workers[1:] // the careful one died
	require.Equal(t, map[string]int{PathCopyFirst: 1}, live())
	start()
	require.Equal(t, map[string]int{PathCareful: 1, PathCopyFirst: 1}, live())

	one := NewMixedFleet(nil, 0, 0, []string{PathCopyFirst}, nil)
	one.workers = append(one.workers, &proc{path: one.nextPath()})
	require.Equal(t, PathCopyFirst, one.workers[0].path)
	require.Zero(t, one.surplus())
}
