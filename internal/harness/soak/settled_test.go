package soak

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The rows a producer run must have enqueued are those the application had
// when the latest run whose scan completed began: not when the last
// invocation started. The 30-minute MinIO soak of seed 207035 flagged 185
// rows created during the run as skipped because a resumed invocation had
// started (and failed to connect during a Postgres outage) after them, while
// the run it resumed had begun before them and its finishing invocation
// scanned on from its checkpoint, past them (F19).
func TestScanCoveredBeforeIsTheLatestCompleteScansStart(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 7, 15, 54, 56, 0, time.UTC)
	at := func(m int) *time.Time { v := t0.Add(time.Duration(m) * time.Minute); return &v }
	runs := []ledger.Run{
		// The soak's runs, newest first as RunList gives them: the finishing
		// --new-run has not started yet when the check runs.
		{ID: "run-2", Kind: ledger.RunProducer, StartedAt: *at(7), FinishedAt: at(36)}, // failed at 8, resumed at the finish
		{ID: "assign", Kind: ledger.RunAssign, StartedAt: *at(19), FinishedAt: at(20)},
		{ID: "run-1", Kind: ledger.RunProducer, StartedAt: *at(0), FinishedAt: at(1)},
	}
	require.Equal(t, *at(7), scanCoveredBefore(runs), "run 2 finished its scan: it covers what existed when it began")

	runs[0].FinishedAt = nil // run 2 never finished its scan: only run 1 covers
	require.Equal(t, *at(0), scanCoveredBefore(runs))

	require.True(t, scanCoveredBefore(nil).IsZero(), "no complete scan: nothing is covered")
	require.True(t, scanCoveredBefore([]ledger.Run{{Kind: ledger.RunAssign, StartedAt: *at(3), FinishedAt: at(4)}}).IsZero(),
		"an archived-assign run scans nothing")
}
