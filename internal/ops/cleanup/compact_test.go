package cleanup_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/report"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/producer"
)

// Compaction after cleanup: photos cleaned and past the rollback window keep
// an audit record with every object move (the report prints exactly what it
// printed before), verify still passes and still knows the legacy keys
// cleanup deleted, and rollback refuses them instead of pointing rows at
// deleted objects; photos inside the window are untouched; the ledger shrinks.
func TestCompactionKeepsTheAuditAndEndsRollback(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	env.Seed(t, seed.Options{Photos: 60, Seed: 37, OwnerlessRate: 0.1})
	s := env.MigrateWith(t, producer.Config{})
	_, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)

	reportOf := func() [][]string {
		var buf bytes.Buffer
		_, err := report.Write(ctx, env.Store, s.RunID, report.CSV, &buf)
		require.NoError(t, err)
		recs, err := csv.NewReader(&buf).ReadAll()
		require.NoError(t, err)
		return recs
	}
	cleaned := countState(t, env, "cleaned")
	require.Greater(t, cleaned, int64(40))

	// Inside the window nothing is compacted.
	p, o, err := env.Store.AuditCountCompactable(ctx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Zero(t, p)
	require.Zero(t, o)
	// Keep two cleaned photos inside the window.
	ledgertest.PostponeCleaned(t, env.Store, 2, time.Hour)
	before := reportOf()
	pageBefore, err := env.Store.RunReportPage(ctx, s.RunID, "", 1000)
	require.NoError(t, err)

	cutoff := time.Now().Add(time.Minute)
	p, o, err = env.Store.AuditCountCompactable(ctx, cutoff)
	require.NoError(t, err)
	require.Equal(t, cleaned-2, p)
	// Four transactions at once, on batches of 7 photos: every photo once.
	res, err := cleanup.Compact(ctx, env.Store, cutoff, 7, 4)
	require.NoError(t, err)
	done, moved := res.Photos, res.ObjectMoves
	require.Equal(t, p, done)
	require.Equal(t, o, moved)
	require.GreaterOrEqual(t, res.Batches, int(p+6)/7)
	compactedPhotos := map[string]bool{}
	for _, m := range ledgertest.PhotoMoves(t, env.Store) {
		if m.CompactedAt != nil {
			compactedPhotos[m.PhotoID] = true
		}
	}
	left := ledgertest.Count(ledgertest.ObjectMoves(t, env.Store), func(o ledgertest.ObjectMove) bool { return compactedPhotos[o.PhotoID] })
	require.Zero(t, left, "no object_moves row is left for a compacted photo")
	again, _, err := env.Store.AuditCountCompactable(ctx, cutoff)
	require.NoError(t, err)
	require.Zero(t, again, "compaction is done once")

	require.Equal(t, before, reportOf(), "the audit report is the same, line for line")
	pageAfter, err := env.Store.RunReportPage(ctx, s.RunID, "", 1000)
	require.NoError(t, err)
	require.Equal(t, pageBefore, pageAfter, "the ledger's record of every photo is the same, old keys included")
	dropped := int64(ledgertest.Count(ledgertest.PhotoMoves(t, env.Store), func(m ledgertest.PhotoMove) bool {
		return m.CompactedAt != nil && m.OldOriginalKey == ""
	}))
	require.Equal(t, done, dropped, "the audit rows hold the old original keys")

	rep, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.True(t, rep.OK(), "verify passes: %+v", rep.Problems)

	var compacted string
	for _, m := range ledgertest.PhotoMoves(t, env.Store) {
		if m.CompactedAt != nil {
			compacted = m.PhotoID
			break
		}
	}
	require.NotEmpty(t, compacted, "a compacted photo")
	_, err = rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: compacted, Force: true})
	require.ErrorContains(t, err, "compacted")
	rb, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{All: true, Force: true, DryRun: true})
	require.NoError(t, err)
	require.Equal(t, done, rb.Compacted)
	// Each filter of the count, alone and together (its statement is built
	// from the filters given, for the worker's generic plans).
	for _, c := range []struct {
		photo, run string
		want       int64
	}{{compacted, "", 1}, {"", s.RunID, done}, {compacted, s.RunID, 1}, {compacted, "run-other", 0}, {"", "", done}} {
		n, err := env.Store.AuditCountCompacted(ctx, c.photo, c.run)
		require.NoError(t, err)
		require.Equal(t, c.want, n, "compacted photos of photo %q, run %q", c.photo, c.run)
	}
	require.Len(t, rb.WouldRollBack, int(cleaned)-int(done)+int(countState(t, env, "archived")), "only photos inside the window (and archived ones) can be rolled back")
}

func countState(t *testing.T, env *testenv.Env, state string) int64 {
	t.Helper()
	return int64(ledgertest.PhotoMovesIn(t, env.Store, state))

}
