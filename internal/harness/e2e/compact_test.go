package e2e_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// The operator's end of a migration with the binaries: cleanup, then `ledger
// compact` (a dry run first, then --yes, once past the rollback window); the
// audit report and verify read the compacted ledger as before, and rollback
// refuses a compacted photo with the reason.
func TestLedgerCompactAfterCleanup(t *testing.T) {
	b := setup(t, testenv.Options{})
	opts := seed.Options{Photos: 40, Seed: 24}
	b.env.Seed(t, opts)
	b.run("producer")
	require.NoError(t, b.worker("--drain", "--concurrency", "8", "--wait-time", "1s").Wait())
	b.run("migratectl", "cleanup", "--grace", "0")
	cleaned := ledgertest.PhotoMovesIn(t, b.env.Store, "cleaned")
	require.Positive(t, cleaned)
	var runID string
	for _, r := range ledgertest.Runs(t, b.env.Store) {
		if r.Kind == "producer" {
			runID = r.RunID
			break
		}
	}
	require.NotEmpty(t, runID, "the producer's run")
	report := b.run("migratectl", "report", "--run", runID)
	require.Greater(t, strings.Count(report, "\n"), 40, "one line per object")

	// Inside the default window (30 days) nothing is compacted.
	require.Contains(t, b.run("migratectl", "ledger", "compact"), "would compact 0 photos")
	out := b.run("migratectl", "ledger", "compact", "--older-than", "0s")
	require.Contains(t, out, fmt.Sprintf("dry run: would compact %d photos", cleaned))
	require.Equal(t, cleaned, ledgertest.Count(ledgertest.PhotoMoves(t, b.env.Store), func(m ledgertest.PhotoMove) bool {
		return m.CompactedAt == nil && m.State == "cleaned"
	}), "a dry run changes nothing")
	out = b.run("migratectl", "ledger", "compact", "--older-than", "0s", "--yes")
	require.Contains(t, out, fmt.Sprintf("compacted %d photos", cleaned))
	require.Zero(t, ledgertest.Rows(t, b.env.Store, ledgertest.TallyObjectMoves))

	require.Equal(t, report, b.run("migratectl", "report", "--run", runID), "the audit report is unchanged")
	require.Contains(t, b.run("migratectl", "verify"), "verify: OK")
	var photo string
	for _, m := range ledgertest.PhotoMoves(t, b.env.Store) {
		if m.CompactedAt != nil {
			photo = m.PhotoID
			break
		}
	}
	require.NotEmpty(t, photo, "a compacted photo")
	_, stderr, code := b.runAll("migratectl", "rollback", "--photo", photo, "--force")
	require.NotZero(t, code)
	require.Contains(t, stderr, "compacted")
}
