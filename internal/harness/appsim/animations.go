package appsim

import (
	"bytes"
	"context"
	"math/rand/v2"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// Animations the application makes or remakes while the migration runs
// (issue 18, item 5). No column records an animation: Resolve reads the
// user-scoped key when it exists, the legacy one (animated/{job}/…) when it
// does not, so the application writes every new animation under the
// user-scoped layout, whether the photo's row is legacy or migrated
// (Phase 1: it never writes a legacy key).
//
//   - add_animation: a photo with no animation gets one, under
//     users/{owner}/animated/{photo}/{animation}_{suffix}.mp4. On a legacy
//     photo the worker's listing of animated/{job}/ does not see it, and it
//     must stay, with its bytes, through the migration, a rollback and an
//     account merge (users_prefix_exact, the reads).
//   - rewrite_animation: an animation of a photo whose row is user-scoped
//     (migrated, or uploaded under Phase 1) gets new bytes at its
//     user-scoped key; where that key holds keymigrate's copy, the
//     application's bytes replace it and must never be put back (a worker's
//     redelivery, a rollback).

// lacksAnimation reports whether the photo has no live animation.
func lacksAnimation(p *Photo) bool {
	for k, o := range p.Objects {
		if k.Kind == keylayout.KindAnimation && o.Live() {
			return false
		}
	}
	return true
}

// liveAnimations lists the photo's live animations, in State's order (so
// the choice among them is the seed's, not a map's).
func liveAnimations(st PhotoState) []ObjKey {
	var out []ObjKey
	for _, o := range st.Objects {
		if o.Key.Kind == keylayout.KindAnimation && o.Live() {
			out = append(out, o.Key)
		}
	}
	return out
}

// newAnimation names a new animation of a photo.
func newAnimation(r *rand.Rand) ObjKey {
	return ObjKey{Kind: keylayout.KindAnimation, AnimID: newID(r), Suffix: []string{"loop", "hd", "boomerang"}[r.IntN(3)]}
}

// addAnimation gives a photo without an animation a new one, under the
// owner's prefix (see the top of the file).
func (s *Sim) addAnimation(ctx context.Context, r *rand.Rand) (bool, error) {
	p := s.lockPhoto(r, lacksAnimation)
	if p == nil {
		return false, nil
	}
	defer p.lock.Unlock()
	st, _ := s.model.State(p.ID)
	owner := *st.Owner
	k := newAnimation(r)
	return s.putAnimation(ctx, p, k, owner, randomBytes(r, k.Kind))
}

// rewriteAnimation writes new bytes for an animation of a user-scoped photo
// (see the top of the file).
func (s *Sim) rewriteAnimation(ctx context.Context, r *rand.Rand) (bool, error) {
	p := s.lockPhoto(r, func(p *Photo) bool { return !lacksAnimation(p) })
	if p == nil {
		return false, nil
	}
	defer p.lock.Unlock()
	row, err := s.loadRow(ctx, p.ID)
	if err != nil {
		return false, err
	}
	if !keylayout.IsUserScoped(row.Original) {
		return false, nil // not migrated yet
	}
	st, _ := s.model.State(p.ID)
	anims := liveAnimations(st)
	k := anims[r.IntN(len(anims))]
	return s.putAnimation(ctx, p, k, *st.Owner, randomBytes(r, k.Kind))
}

// putAnimation writes an animation's bytes at its user-scoped key and
// records the version: a failed Put is settled by reading the key back.
func (s *Sim) putAnimation(ctx context.Context, p *Photo, k ObjKey, owner string, body []byte) (bool, error) {
	key := k.UserKey(owner, p.ID)
	s.model.beginWrite(p, k, hashOf(body), "")
	if err := s.retryApp(ctx, func() error {
		_, err := s.store(ctx).Put(ctx, owner, k.Ref(p.ID), bytes.NewReader(body), int64(len(body)), contentType(k))
		return err
	}); err != nil {
		return false, s.settleUncertain(ctx, p, k, owner, key, body, err)
	}
	s.model.endWrite(p, k, true)
	return true, nil
}
