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
	var cleaned, objects int64
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT count(*), (SELECT count(*) FROM keymigrate.object_moves) FROM keymigrate.photo_moves WHERE state = 'cleaned'`).Scan(&cleaned, &objects))
	require.Greater(t, cleaned, int64(40))

	// Inside the window nothing is compacted.
	p, o, err := env.Store.AuditCountCompactable(ctx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Zero(t, p)
	require.Zero(t, o)
	// Keep two cleaned photos inside the window.
	_, err = env.Store.Pool().Exec(ctx, `UPDATE keymigrate.photo_moves SET cleaned_at = now() + interval '1 hour'
 WHERE photo_id IN (SELECT photo_id FROM keymigrate.photo_moves WHERE state = 'cleaned' ORDER BY photo_id LIMIT 2)`)
	require.NoError(t, err)
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
	var left int64
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.object_moves o JOIN keymigrate.photo_moves m USING (photo_id) WHERE m.compacted_at IS NOT NULL`).Scan(&left))
	require.Zero(t, left, "no object_moves row is left for a compacted photo")
	again, _, err := env.Store.AuditCountCompactable(ctx, cutoff)
	require.NoError(t, err)
	require.Zero(t, again, "compaction is done once")

	require.Equal(t, before, reportOf(), "the audit report is the same, line for line")
	pageAfter, err := env.Store.RunReportPage(ctx, s.RunID, "", 1000)
	require.NoError(t, err)
	require.Equal(t, pageBefore, pageAfter, "the ledger's record of every photo is the same, old keys included")
	var dropped int64
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.photo_moves WHERE compacted_at IS NOT NULL AND old_original_key IS NULL`).Scan(&dropped))
	require.Equal(t, done, dropped, "the audit rows hold the old original keys")

	rep, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.True(t, rep.OK(), "verify passes: %+v", rep.Problems)

	var compacted string
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT photo_id FROM keymigrate.photo_moves WHERE compacted_at IS NOT NULL LIMIT 1`).Scan(&compacted))
	_, err = rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: compacted, Force: true})
	require.ErrorContains(t, err, "compacted")
	rb, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{All: true, Force: true, DryRun: true})
	require.NoError(t, err)
	require.Equal(t, done, rb.Compacted)
	require.Len(t, rb.WouldRollBack, int(cleaned)-int(done)+int(countState(t, env, "archived")), "only photos inside the window (and archived ones) can be rolled back")
}

func countState(t *testing.T, env *testenv.Env, state string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, env.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM keymigrate.photo_moves WHERE state = $1`, state).Scan(&n))
	return n
}
