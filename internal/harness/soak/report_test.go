package soak

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
)

func TestReportTableAndViolations(t *testing.T) {
	t.Parallel()
	rep := &Report{Seed: 7, Server: "versitygw", Duration: 2 * time.Minute, Schedule: Generate(7, 2*time.Minute),
		App:      appsim.Summary{Reads: map[appsim.Verdict]int64{appsim.ReadOK: 10, appsim.ReadStale: 1}, Latency: map[string]appsim.Latency{"baseline": {Count: 3, P50: time.Millisecond}}},
		Outcome:  map[string]int{"migrated": 5},
		Operator: map[string]*Count{"pause": {OK: 1}},
	}
	rep.finaliseWith([]Violation{{Invariant: InvReads, PhotoID: "p", Detail: "stale read"}, {Invariant: InvLegacyKept, Key: "uploaded/j.jpg", Detail: "deleted"}})
	require.False(t, rep.OK())
	var b bytes.Buffer
	rep.Table(&b)
	for _, want := range []string{"seed 7 on versitygw", "read latency without the migration", "p50 1.0 ms", "stale 1", "**2**", "needed_legacy_kept 1"} {
		require.Contains(t, b.String(), want)
	}
	b.Reset()
	rep.Violations(&b)
	require.Contains(t, b.String(), "reads_during_run photo=p")
	b.Reset()
	require.NoError(t, rep.JSON(&b))
	require.Contains(t, b.String(), `"violation_count": 2`)
}
