package verify_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

func TestVerifyGate(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 30, Seed: 41, OrphanRate: 0.3, OwnerlessRate: 0.1}
	res := env.Seed(t, opts)
	photos := seed.Generate(opts)

	// Before the migration: every owned row references legacy keys.
	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.False(t, r.OK())
	require.Positive(t, r.ProblemsByKind[verify.LegacyKeyReferenced])
	require.Zero(t, r.OrphanCount-int64(res.Orphans), "before the migration orphans are found already")

	env.Migrate(t)
	r, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{Deep: true})
	require.NoError(t, err)
	require.True(t, r.OK(), "%+v", r.Problems)
	require.EqualValues(t, res.Orphans, r.OrphanCount, "orphans are reported, not failed")
	require.Positive(t, r.DeepCompared)

	// A new object deleted by hand: verify fails and names it.
	var owned seed.Photo
	for _, p := range photos {
		if p.OwnerID != nil {
			owned = p
			break
		}
	}
	l, _ := keylayout.ParseLegacy(owned.Original)
	newKey, _ := l.UserScoped(*owned.OwnerID, owned.ID)
	require.NoError(t, env.Objects.Delete(ctx, newKey))
	r, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.False(t, r.OK())
	found := false
	for _, p := range r.Problems {
		if p.Key == newKey && p.Kind == verify.ReferencedKeyMissing {
			found = true
		}
	}
	require.True(t, found, "the missing object is named: %+v", r.Problems)
	require.Equal(t, []string{owned.ID}, r.Repair, "an operator may ask for its repair")
	env.Put(t, newKey, []byte("put back"), "image/jpeg", nil)

	// An animation written under the old layout after the swap is found, and
	// its photo listed for re-enqueueing.
	late := "animated/" + owned.JobID + "/0a0b0c0d-late_loop.mp4"
	env.Put(t, late, []byte("late"), "video/mp4", nil)
	r, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.EqualValues(t, 1, r.ProblemsByKind[verify.UnmovedLegacyObject])
	require.Equal(t, []string{owned.ID}, r.Requeue)
}
