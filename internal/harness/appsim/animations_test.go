package appsim

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// add_animation goes to a photo with no live animation (a deleted one does
// not count); rewrite_animation chooses among the live ones, in the same
// order for the same seed; a new animation is a well-formed user-scoped key.
func TestAnimationPicks(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	live := func(h string) *Object { return &Object{Versions: []Version{{Hash: h, Start: t0, End: t0}}} }
	gone := &Object{Versions: []Version{{Hash: "a", Start: t0, End: t0}, {Hash: "", Start: t0, End: t0}}}
	a1 := ObjKey{Kind: keylayout.KindAnimation, AnimID: "b", Suffix: "loop"}
	a2 := ObjKey{Kind: keylayout.KindAnimation, AnimID: "a", Suffix: "hd"}
	thumb := ObjKey{Kind: keylayout.KindThumbnail}

	require.True(t, lacksAnimation(&Photo{Objects: map[ObjKey]*Object{thumb: live("t")}}), "no animation")
	require.True(t, lacksAnimation(&Photo{Objects: map[ObjKey]*Object{thumb: live("t"), a1: gone}}), "its only animation deleted")
	require.False(t, lacksAnimation(&Photo{Objects: map[ObjKey]*Object{a1: live("x")}}), "a live animation")

	m := NewModel()
	owner := "u"
	m.addPhoto(&Photo{ID: "p", Owner: &owner, Objects: map[ObjKey]*Object{thumb: live("t"), a1: live("x"), a2: live("y"), {Kind: keylayout.KindAnimation, AnimID: "c", Suffix: "hd"}: gone}})
	st, _ := m.State("p")
	for range 20 {
		require.Equal(t, []ObjKey{a2, a1}, liveAnimations(st), "live ones only, in State's order")
	}

	r1, r2 := rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(1, 2))
	k := newAnimation(r1)
	require.Equal(t, k, newAnimation(r2), "the seed decides")
	u, err := keylayout.ParseUserKey(k.UserKey("0f6b7a52-6a0d-4c1e-9d56-1f1c9a6b2f10", "7d3c1e0a-1b2c-4d5e-8f90-a1b2c3d4e5f6"))
	require.NoError(t, err)
	require.Equal(t, k, ObjKeyOf(u))
}
