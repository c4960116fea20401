package status

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

func TestIdle(t *testing.T) {
	t.Parallel()
	s := Status{States: map[string]int64{"in_progress": 1}}
	require.False(t, s.Idle(), "without the queue, the ledger decides")
	s.Queue = &queue.Depth{}
	require.True(t, s.Idle(), "with an empty queue, a stale in-progress photo does not block")
	s.Queue = &queue.Depth{InFlight: 1}
	require.False(t, s.Idle())
	s = Status{States: map[string]int64{"pending": 3}, Queue: &queue.Depth{}}
	require.False(t, s.Idle(), "legacy photos not yet enqueued")
}
