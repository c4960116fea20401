package e2e_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
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
	cleaned := b.count(`SELECT count(*) FROM keymigrate.photo_moves WHERE state = 'cleaned'`)
	require.Positive(t, cleaned)
	var runID string
	require.NoError(t, b.env.Store.Pool().QueryRow(t.Context(), `SELECT run_id FROM keymigrate.runs WHERE kind = 'producer'`).Scan(&runID))
	report := b.run("migratectl", "report", "--run", runID)
	require.Greater(t, strings.Count(report, "\n"), 40, "one line per object")

	// Inside the default window (30 days) nothing is compacted.
	require.Contains(t, b.run("migratectl", "ledger", "compact"), "would compact 0 photos")
	out := b.run("migratectl", "ledger", "compact", "--older-than", "0s")
	require.Contains(t, out, fmt.Sprintf("dry run: would compact %d photos", cleaned))
	require.Equal(t, cleaned, b.count(`SELECT count(*) FROM keymigrate.photo_moves WHERE compacted_at IS NULL AND state = 'cleaned'`), "a dry run changes nothing")
	out = b.run("migratectl", "ledger", "compact", "--older-than", "0s", "--yes")
	require.Contains(t, out, fmt.Sprintf("compacted %d photos", cleaned))
	require.Zero(t, b.count(`SELECT count(*) FROM keymigrate.object_moves`))

	require.Equal(t, report, b.run("migratectl", "report", "--run", runID), "the audit report is unchanged")
	require.Contains(t, b.run("migratectl", "verify"), "verify: OK")
	var photo string
	require.NoError(t, b.env.Store.Pool().QueryRow(t.Context(), `SELECT photo_id FROM keymigrate.photo_moves WHERE compacted_at IS NOT NULL LIMIT 1`).Scan(&photo))
	_, stderr, code := b.runAll("migratectl", "rollback", "--photo", photo, "--force")
	require.NotZero(t, code)
	require.Contains(t, stderr, "compacted")
}
