package appsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// Which photos the application may take the owner from, or give one to
// (owners.go): a removal only from a wholly pristine legacy photo, since an
// ownerless row must end archived with its legacy keys and nothing under
// users/; a gift only to an ownerless photo that is not broken on purpose.
func TestRemovableAndClaimable(t *testing.T) {
	t.Parallel()
	owner := "0f6b7a52-6a0d-4c1e-9d56-1f1c9a6b2f10"
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	thumb := ObjKey{Kind: keylayout.KindThumbnail}
	legacy := func() map[ObjKey]*Object {
		return map[ObjKey]*Object{thumb: {Legacy: "thumbnails/j.jpg", Versions: []Version{{Hash: "h", Start: t0, End: t0}}}}
	}
	photo := func(origin Origin, mut func(p *Photo)) *Photo {
		o := owner
		p := &Photo{ID: "p", Owner: &o, Origin: origin, Objects: legacy()}
		if mut != nil {
			mut(p)
		}
		return p
	}
	cases := []struct {
		name string
		p    *Photo
		want bool
	}{
		{"a seeded photo, untouched", photo(OriginSeeded, nil), true},
		{"a duplicate", photo(OriginDuplicate, nil), true},
		{"a late legacy row", photo(OriginLegacySeeded, nil), true},
		{"a Phase 1 upload (its keys are under users/)", photo(OriginApp, nil), false},
		{"broken on purpose", photo(OriginProblem, func(p *Photo) { p.Expect = ExpectSourceMissing }), false},
		{"deleted", photo(OriginSeeded, func(p *Photo) { p.Deleted = true }), false},
		{"already ownerless", photo(OriginSeeded, func(p *Photo) { p.Owner = nil }), false},
		{"an object the application rewrote", photo(OriginSeeded, func(p *Photo) {
			o := p.Objects[thumb]
			o.Versions = append(o.Versions, Version{Hash: "h2", Start: t0, End: t0})
		}), false},
		{"an object the application wrote under users/", photo(OriginSeeded, func(p *Photo) { p.Objects[thumb].AppUser = true }), false},
		{"an object with no legacy key", photo(OriginSeeded, func(p *Photo) {
			p.Objects[ObjKey{Kind: keylayout.KindMetadata}] = &Object{Versions: []Version{{Hash: "m", Start: t0, End: t0}}}
		}), false},
	}
	for _, c := range cases {
		require.Equal(t, c.want, removable(c.p), c.name)
	}

	require.True(t, claimable(photo(OriginDuplicate, func(p *Photo) { p.Owner = nil })), "an ownerless duplicate")
	require.False(t, claimable(photo(OriginDuplicate, nil)), "an owned photo")
	require.False(t, claimable(photo(OriginProblem, func(p *Photo) { p.Owner = nil; p.Expect = ExpectSourceMissing })), "broken on purpose")
	require.False(t, claimable(photo(OriginDuplicate, func(p *Photo) { p.Owner = nil; p.Deleted = true })), "deleted")
}

// A read that found the row without an owner is no read at all when the
// photo is ownerless, or was when the read began; otherwise it is a failure
// for Judge (excused while the owner is being removed, an error after).
func TestReadOfOwnerless(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	owner := "u"
	require.False(t, readOfOwnerless(PhotoState{}, at(5)), "ownerless now")
	require.True(t, readOfOwnerless(PhotoState{Owner: &owner}, at(5)), "owned throughout: the row lost its owner behind the application's back")
	given := PhotoState{Owner: &owner, Events: []Event{{Kind: "give_owner", Start: at(3), End: at(6)}}}
	require.False(t, readOfOwnerless(given, at(5)), "ownerless when the read began")
	require.True(t, readOfOwnerless(given, at(7)), "owned since before the read began")
	inFlight := PhotoState{Owner: &owner, Events: []Event{{Kind: "give_owner", Start: at(3)}}}
	require.False(t, readOfOwnerless(inFlight, at(7)), "an owner being given")
	assigned := PhotoState{Owner: &owner, Events: []Event{{Kind: "archived_assign", Start: at(3), End: at(6)}}}
	require.False(t, readOfOwnerless(assigned, at(5)), "ownerless when the read began: the operator's archived assign (assign.go)")
	require.True(t, readOfOwnerless(assigned, at(7)), "assigned before the read began")

	// While an owner is being removed, the failed read is excused; after, it
	// is an error (the model still says owned).
	m := NewModel()
	k := ObjKey{Kind: keylayout.KindThumbnail}
	p := &Photo{ID: "p", Owner: &owner, Objects: map[ObjKey]*Object{k: {Versions: []Version{{Hash: "v1", Start: at(0), End: at(1)}}}},
		Events: []Event{{Kind: "remove_owner", Start: at(10), End: at(11)}}}
	m.addPhoto(p)
	require.Equal(t, ReadExcused, m.Judge("p", k, "", true, at(10), at(12)))
	require.Equal(t, ReadError, m.Judge("p", k, "", true, at(12), at(13)))
}
