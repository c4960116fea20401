package cleanup_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// On a photos table large enough (here: a threshold of one row) that lacks
// the indexes cleanup's job lookups need, cleanup refuses before it claims
// or deletes anything, names the SQL that fixes it, and runs once they are
// built or with AllowFullScans.
func TestCleanupRefusesALargeTableWithoutItsIndexes(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	env.Seed(t, seed.Options{Photos: 12, Seed: 5})
	env.Migrate(t)
	pool := env.Store.Pool()
	for _, idx := range []string{"photos_original_job", "photos_processed_job", "photos_thumbnail_job"} {
		_, err := pool.Exec(ctx, `DROP INDEX IF EXISTS `+idx)
		require.NoError(t, err)
	}
	_, err := pool.Exec(ctx, `ANALYZE photos`)
	require.NoError(t, err)
	before := legacyKeys(t, env)

	o := cleanup.Options{FullScanRows: 1}
	_, err = cleanup.Run(ctx, env.Store, env.Objects, o)
	var missing *cleanup.MissingIndexesError
	require.True(t, errors.As(err, &missing), "%v", err)
	require.Equal(t, ledger.ApplicationIndexes[1:], missing.Missing)
	require.Contains(t, err.Error(), "have the application team build them")
	require.Equal(t, before, legacyKeys(t, env), "nothing deleted")

	// A table below the threshold is read whole cheaply: no refusal.
	rep, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{DryRun: true})
	require.NoError(t, err)
	require.Positive(t, rep.Deleted, "a dry run counts what it would delete")

	o.AllowFullScans = true
	o.DryRun = true
	_, err = cleanup.Run(ctx, env.Store, env.Objects, o)
	require.NoError(t, err)

	for _, idx := range ledger.ApplicationIndexes {
		_, err = pool.Exec(ctx, idx)
		require.NoError(t, err)
	}
	o.AllowFullScans = false
	o.Again = true
	_, err = cleanup.Run(ctx, env.Store, env.Objects, o)
	require.NoError(t, err)
}
