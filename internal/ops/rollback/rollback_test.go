package rollback_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

type row struct {
	Original, Processed, Thumbnail, Status, Owner string
}

func snapshot(t *testing.T, env *testenv.Env) map[string]row {
	t.Helper()
	rows, err := env.Store.Pool().Query(context.Background(), `SELECT id::text, original_key, coalesce(processed_key, '<null>'), coalesce(thumbnail_key, '<null>'), status, coalesce(owner_id, '<null>') FROM photos`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]row{}
	for rows.Next() {
		var id string
		var r row
		require.NoError(t, rows.Scan(&id, &r.Original, &r.Processed, &r.Thumbnail, &r.Status, &r.Owner))
		out[id] = r
	}
	return out
}

func TestRollbackAllRestoresEveryRowExactly(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	env.Seed(t, seed.Options{Photos: 60, Seed: 21, OwnerlessRate: 0.1})
	before := snapshot(t, env)
	env.Migrate(t)
	require.NotEqual(t, before, snapshot(t, env), "the migration changed rows")

	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{All: true, DryRun: true})
	require.NoError(t, err)
	require.Len(t, rep.WouldRollBack, 60)
	require.NotEqual(t, before, snapshot(t, env), "a dry run changes nothing")

	rep, err = rollback.Run(ctx, env.Store, env.Objects, rollback.Options{All: true})
	require.NoError(t, err)
	require.Empty(t, rep.Refused)
	require.Equal(t, 60, rep.RolledBack+rep.Unarchived)
	require.Positive(t, rep.Unarchived, "archived photos are restored too")
	require.Equal(t, before, snapshot(t, env), "every row's keys and status are as before the migration")
	for _, r := range before {
		for _, k := range []string{r.Original, r.Processed, r.Thumbnail} {
			if k == "<null>" {
				continue
			}
			_, err := env.Objects.Get(ctx, k)
			require.NoError(t, err, "old object %s is readable", k)
		}
	}
}

func TestRollbackRefusesARowTheAppChanged(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	env.Seed(t, seed.Options{Photos: 5, Seed: 22, OwnerlessRate: 0.0001})
	env.Migrate(t)
	photos := seed.Generate(seed.Options{Photos: 5, Seed: 22, OwnerlessRate: 0.0001})
	changed := photos[0]
	// After the migration, the app gives the photo a new thumbnail.
	appKey := keylayout.ThumbnailKey(*changed.OwnerID, changed.ID)
	env.Put(t, appKey+".v2", []byte("new"), "image/jpeg", nil)
	_, err := env.Store.Pool().Exec(ctx, `UPDATE photos SET thumbnail_key = $2 WHERE id = $1`, changed.ID, appKey+".v2")
	require.NoError(t, err)

	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{All: true})
	require.NoError(t, err)
	require.Len(t, rep.Refused, 1)
	require.Equal(t, changed.ID, rep.Refused[0].PhotoID)
	require.Contains(t, rep.Refused[0].Reason, "changed the row")
	require.Equal(t, appKey+".v2", *env.Photo(t, changed.ID).Thumbnail, "the app's change is kept")
	require.Equal(t, 4, rep.RolledBack)
	require.Equal(t, photos[1].Original, env.Photo(t, photos[1].ID).Original)
}

func TestRollbackAfterCleanupCopiesBackAndDeleteNewRemovesCopies(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 8, Seed: 23, OwnerlessRate: 0.0001}
	env.Seed(t, opts)
	before := snapshot(t, env)
	env.Migrate(t)
	crep, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)
	require.Positive(t, crep.Deleted)
	p := seed.Generate(opts)[0]
	_, err = env.Objects.Head(ctx, p.Original)
	require.Error(t, err, "cleanup deleted the legacy original")

	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: p.ID, DeleteNew: true})
	require.NoError(t, err)
	require.Empty(t, rep.Refused)
	require.Equal(t, 1, rep.RolledBack)
	require.Equal(t, len(p.Objects), rep.Restored)
	require.Equal(t, len(p.Objects), rep.DeletedNew)
	require.Equal(t, before[p.ID], snapshot(t, env)[p.ID])
	for _, o := range p.Objects {
		got, err := env.Objects.Get(ctx, o.Key)
		require.NoError(t, err, "%s copied back", o.Key)
		require.EqualValues(t, o.Size, len(got))
	}
	keys, err := env.Objects.List(ctx, keylayout.UserPrefix(*p.OwnerID))
	require.NoError(t, err)
	for _, k := range keys {
		require.NotContains(t, k, p.ID, "new copies of the rolled-back photo are gone")
	}
	st, _, err := env.Store.PhotoMoveGet(ctx, p.ID)
	require.NoError(t, err)
	require.Equal(t, ledger.StateRolledBack, st.State)
	_ = ledger.ArchivedStatus
}
