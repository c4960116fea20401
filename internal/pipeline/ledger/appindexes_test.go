package ledger_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The check that the application's indexes are in place finds each missing
// one whatever the table's size, and accepts an equivalent index under
// another name (the application's own).
func TestPhotoMissingIndexesFindsEachMissingIndex(t *testing.T) {
	t.Parallel()
	st := testenv.New(t, testenv.Options{}).Store
	ctx := context.Background()
	pool := st.Pool()
	for _, idx := range []string{"photos_owner_id", "photos_original_job", "photos_processed_job", "photos_thumbnail_job"} {
		_, err := pool.Exec(ctx, `DROP INDEX IF EXISTS `+idx)
		require.NoError(t, err)
	}
	missing, _, err := st.PhotoMissingIndexes(ctx)
	require.NoError(t, err)
	require.Equal(t, ledger.ApplicationIndexes, missing, "a table without them lacks every one")

	// The application's own index on the original's job, under its name.
	_, err = pool.Exec(ctx, `CREATE INDEX app_uploads_by_job ON photos ((substring(original_key FROM '^uploaded/([A-Za-z0-9-]+)\.[^./]+$')))`)
	require.NoError(t, err)
	missing, _, err = st.PhotoMissingIndexes(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{ledger.ApplicationIndexes[0], ledger.ApplicationIndexes[2], ledger.ApplicationIndexes[3]}, missing)

	for _, idx := range ledger.ApplicationIndexes {
		_, err = pool.Exec(ctx, idx)
		require.NoError(t, err)
	}
	missing, _, err = st.PhotoMissingIndexes(ctx)
	require.NoError(t, err)
	require.Empty(t, missing)
}
