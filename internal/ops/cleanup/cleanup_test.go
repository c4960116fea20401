package cleanup_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// legacyKeys lists every object outside users/.
func legacyKeys(t *testing.T, env *testenv.Env) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	require.NoError(t, env.Objects.ListEach(context.Background(), "", func(k string, _ int64, _ string) error {
		if !keylayout.IsUserScoped(k) {
			out[k] = true
		}
		return nil
	}))
	return out
}

func TestCleanupDeletesExactlyTheVerifiedMovedObjects(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 40, Seed: 31, OwnerlessRate: 0.1, OrphanRate: 0.2}
	env.Seed(t, opts)
	env.Migrate(t)
	photos := seed.Generate(opts)

	// Inside the grace period nothing goes.
	rep, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: time.Hour})
	require.NoError(t, err)
	require.Zero(t, rep.Deleted)

	// Sabotage two new copies: one removed, one replaced by other bytes.
	var victims []seed.Photo
	for _, p := range photos {
		if p.OwnerID != nil && len(victims) < 2 {
			victims = append(victims, p)
		}
	}
	gone := keylayout.ThumbnailKey(*victims[0].OwnerID, victims[0].ID)
	if victims[0].Thumbnail == nil {
		l, _ := keylayout.ParseLegacy(victims[0].Original)
		gone, _ = l.UserScoped(*victims[0].OwnerID, victims[0].ID)
	}
	require.NoError(t, env.Objects.Delete(ctx, gone))
	l, _ := keylayout.ParseLegacy(victims[1].Original)
	corrupt, _ := l.UserScoped(*victims[1].OwnerID, victims[1].ID)
	env.Put(t, corrupt, []byte("corrupted"), "image/jpeg", nil)

	before := legacyKeys(t, env)
	dry, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0, DryRun: true})
	require.NoError(t, err)
	require.Equal(t, before, legacyKeys(t, env), "a dry run deletes nothing")
	require.Positive(t, dry.Bytes)

	// Interrupted after its first batch, then resumed.
	ctx1, cancel := context.WithCancel(ctx)
	_, err = cleanup.Run(ctx1, env.Store, env.Objects, cleanup.Options{Grace: 0, Batch: 10, Progress: func(*cleanup.Report) { cancel() }})
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
	rep, err = cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)
	require.EqualValues(t, 2, rep.KeptTotal(), "%+v", rep.KeptExamples)

	after := legacyKeys(t, env)
	var deleted int
	for _, p := range photos {
		for _, o := range p.Objects {
			nk := ""
			if p.OwnerID != nil {
				l, _ := keylayout.ParseLegacy(o.Key)
				nk, _ = l.UserScoped(*p.OwnerID, p.ID)
			}
			switch {
			case p.OwnerID == nil:
				require.True(t, after[o.Key], "archived photo's %s kept", o.Key)
			case nk == gone || nk == corrupt:
				require.True(t, after[o.Key], "%s kept: its new copy is missing or differs", o.Key)
			default:
				require.False(t, after[o.Key], "%s deleted", o.Key)
				deleted++
			}
		}
		if p.OrphanObject != nil {
			require.True(t, after[p.OrphanObject.Key], "orphan %s kept", p.OrphanObject.Key)
		}
	}
	require.EqualValues(t, dry.Deleted, deleted, "the dry run announced what was deleted")
	_, err = env.Objects.Head(ctx, corrupt)
	require.NoError(t, err)
	_, err = env.Objects.Head(ctx, gone)
	require.ErrorIs(t, err, objstore.ErrNotFound)
}
