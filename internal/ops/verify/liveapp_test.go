package verify_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// The application keeps writing after a photo is migrated: a new thumbnail
// under the photo's user-scoped key, an animation deleted by the user, a
// whole photo deleted. verify --deep must count those as the application's
// doing, not report them as damage (soak finding F2: the Phase 3 gate could
// not pass on a live application), while a row pointing at a missing object
// stays a problem.
func TestVerifyDeepTellsTheApplicationsWritesFromDamage(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 20, Seed: 43}
	env.Seed(t, opts)
	photos := seed.Generate(opts)
	env.Migrate(t)

	var owned []seed.Photo
	for _, p := range photos {
		if p.OwnerID != nil && p.Thumbnail != nil {
			owned = append(owned, p)
		}
	}
	require.GreaterOrEqual(t, len(owned), 3)
	newKey := func(p seed.Photo, legacy string) string {
		l, err := keylayout.ParseLegacy(legacy)
		require.NoError(t, err)
		k, err := l.UserScoped(*p.OwnerID, p.ID)
		require.NoError(t, err)
		return k
	}

	// A new thumbnail written by the application over the migrated one.
	rewritten := newKey(owned[0], *owned[0].Thumbnail)
	env.Put(t, rewritten, []byte("a thumbnail the user regenerated"), "image/jpeg", nil)
	// An object no column references (an animation or the metadata),
	// deleted by the application.
	var unreferenced string
	for _, p := range owned[1:] {
		for _, o := range p.Objects {
			if strings.HasPrefix(o.Key, "animated/") || strings.HasPrefix(o.Key, "meta/") {
				unreferenced = newKey(p, o.Key)
				break
			}
		}
		if unreferenced != "" {
			break
		}
	}
	require.NotEmpty(t, unreferenced, "the seed has a photo with an animation or metadata")
	require.NoError(t, env.Objects.Delete(ctx, unreferenced))
	// A photo the user deleted: row and new objects gone.
	gone := owned[len(owned)-1]
	_, err := env.Store.Pool().Exec(ctx, `DELETE FROM photos WHERE id::text = $1`, gone.ID)
	require.NoError(t, err)
	require.NoError(t, env.Objects.Delete(ctx, newKey(gone, gone.Original)))

	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{Deep: true})
	require.NoError(t, err)
	require.True(t, r.OK(), "the application's own writes are not problems: %+v", r.Problems)
	require.EqualValues(t, 1, r.Rewritten, "the regenerated thumbnail is counted as the application's")
	require.EqualValues(t, 1, r.Missing, "the deleted unreferenced object is counted")
	require.Positive(t, r.DeletedPhotos, "the deleted photo's moved objects are counted, not checked")

	// Damage is still damage: a key a live row points at, gone.
	damaged := newKey(owned[0], owned[0].Original)
	require.NoError(t, env.Objects.Delete(ctx, damaged))
	r, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{Deep: true})
	require.NoError(t, err)
	require.False(t, r.OK())
	require.EqualValues(t, 1, r.ProblemsByKind[verify.ReferencedKeyMissing], "%+v", r.Problems)
}
