package appsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// Owners set to and from NULL (issue 18, item 5). DESIGN.md: a row with no
// owner_id is not moved; the worker archives it (status 'archived', keys
// untouched) and `archived report` lists it for review; `archived assign`
// gives it an owner afterwards. The application's side of that, as modelled:
//
//   - remove_owner: a user's account is closed and the photo kept without an
//     owner. The application does it only to a row that is still wholly
//     legacy and whose objects are all the legacy ones (it never wrote under
//     users/ for the photo): a user-scoped row cannot be ownerless, its keys
//     are under its owner's prefix. It sets owner_id to NULL by
//     compare-and-set on the owner and the legacy keys it read (a worker's
//     swap in between wins: the photo is then the user's), and then deletes
//     whatever the photo has under the former owner's prefix, as after an
//     account merge (the former owner must not keep access). The photo must
//     end archived with its legacy keys, and nothing of it may be left under
//     the former owner's prefix (end_state, users_prefix_exact): a worker
//     that had copied it there before the owner went discards its copies.
//   - give_owner: a user claims an ownerless photo. The application sets
//     owner_id by compare-and-set on owner_id IS NULL, the keys it read and
//     a status other than 'archived': once the worker has archived the row,
//     the operator's review owns it (`archived assign`) and the application
//     leaves it. A photo given an owner before it was archived must end
//     migrated under that owner.

// removable reports whether the application may take the photo's owner away:
// an owned legacy photo (seeded, a duplicate or a late legacy row) not broken
// on purpose, every object of which is still its pristine legacy object.
func removable(p *Photo) bool {
	if p.Deleted || !ownerOK(p) || p.Expect != "" || len(p.Objects) == 0 {
		return false
	}
	switch p.Origin {
	case OriginSeeded, OriginDuplicate, OriginLegacySeeded:
	default:
		return false
	}
	for _, o := range p.Objects {
		if !o.Pristine() || o.AppUser {
			return false
		}
	}
	return true
}

// claimable reports whether the photo is ownerless and the application may
// give it an owner (the row's status decides the rest).
func claimable(p *Photo) bool {
	return !p.Deleted && p.Owner == nil && p.Expect == "" && p.Origin != OriginProblem && p.Origin != OriginApp
}

// sameLegacyKeys reports whether the row still holds the photo's legacy keys.
func sameLegacyKeys(row Row, l LegacyRow) bool {
	return row.Original == l.Original && samePtr(row.Processed, l.Processed) && samePtr(row.Thumbnail, l.Thumbnail)
}

func samePtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// removeOwner takes the owner away from a legacy photo (see the top of the
// file). With remove_owner in Config.Aimed it aims, half of the time, at a
// photo the migration is moving right now, so that the owner goes between a
// worker's copies and its swap.
func (s *Sim) removeOwner(ctx context.Context, r *rand.Rand) (bool, error) {
	p, _ := s.lockTarget(ctx, r, OpRemoveOwner, removable)
	if p == nil {
		return false, nil
	}
	defer p.lock.Unlock()
	st, _ := s.model.State(p.ID)
	former := *st.Owner
	row, err := s.loadRow(ctx, p.ID)
	if err != nil {
		return false, err
	}
	if row.OwnerID == nil || *row.OwnerID != former || !sameLegacyKeys(row, st.Legacy) {
		return false, nil // the worker swapped it: the photo is under its owner's prefix now
	}
	ev := s.model.beginEvent(p, "remove_owner")
	defer s.model.endEvent(p, ev)
	tag, err := s.deps.Pool.Exec(ctx, `
UPDATE photos SET owner_id = NULL, updated_at = now()
 WHERE id = $1 AND owner_id = $2 AND original_key = $3 AND processed_key IS NOT DISTINCT FROM $4 AND thumbnail_key IS NOT DISTINCT FROM $5`,
		p.ID, former, row.Original, row.Processed, row.Thumbnail)
	if err != nil {
		// The update may have committed: what the row says is what happened.
		after, rerr := s.loadRow(context.WithoutCancel(ctx), p.ID)
		if rerr != nil || after.OwnerID != nil {
			return false, err
		}
	} else if tag.RowsAffected() == 0 {
		return false, nil // swapped meanwhile
	}
	s.model.mu.Lock()
	p.Owner = nil
	p.PrevOwners = append(p.PrevOwners, former)
	s.model.mu.Unlock()
	if err := s.deletePhotoObjects(ctx, former, p.ID); err != nil {
		return true, fmt.Errorf("owner removed, objects under the former owner's prefix not deleted: %w", err)
	}
	return true, nil
}

// giveOwner gives an ownerless photo that is not archived an owner (see the
// top of the file).
func (s *Sim) giveOwner(ctx context.Context, r *rand.Rand) (bool, error) {
	p := s.lockWhere(r, claimable)
	if p == nil {
		return false, nil
	}
	defer p.lock.Unlock()
	row, err := s.loadRow(ctx, p.ID)
	if err != nil {
		return false, err
	}
	if row.OwnerID != nil {
		return false, fmt.Errorf("photo %s: owner %s, the model says none", p.ID, *row.OwnerID)
	}
	if row.Status == ledger.ArchivedStatus {
		s.stats.note("give_owner_left_an_archived_photo_to_the_operator")
		return false, nil
	}
	owner := s.user(r)
	ev := s.model.beginEvent(p, "give_owner")
	defer s.model.endEvent(p, ev)
	tag, err := s.deps.Pool.Exec(ctx, `
UPDATE photos SET owner_id = $2, updated_at = now()
 WHERE id = $1 AND owner_id IS NULL AND status IS DISTINCT FROM 'archived'
   AND original_key = $3 AND processed_key IS NOT DISTINCT FROM $4 AND thumbnail_key IS NOT DISTINCT FROM $5`,
		p.ID, owner, row.Original, row.Processed, row.Thumbnail)
	if err != nil {
		after, rerr := s.loadRow(context.WithoutCancel(ctx), p.ID)
		if rerr != nil || after.OwnerID == nil || *after.OwnerID != owner {
			return false, err
		}
	} else if tag.RowsAffected() == 0 {
		s.stats.note("give_owner_left_an_archived_photo_to_the_operator")
		return false, nil // archived meanwhile
	}
	s.model.mu.Lock()
	p.Owner = &owner
	s.model.mu.Unlock()
	return true, nil
}

// errNoOwner: the row has no owner, so the application reads nothing of it
// for a user.
var errNoOwner = errors.New("the row has no owner")

// readOfOwnerless decides what a read that found the row without an owner
// is: not a read at all (false) when the model has the photo ownerless now,
// or had it ownerless when the read began (an owner given since); the
// application serves an ownerless photo to nobody. Otherwise (true) it is a
// failed read, for Judge: excused while an owner is being removed, an error
// after.
func readOfOwnerless(st PhotoState, rs time.Time) bool {
	if st.Owner == nil {
		return false
	}
	for _, e := range st.Events {
		if (e.Kind == "give_owner" || e.Kind == "archived_assign") && (e.End.IsZero() || e.End.After(rs)) {
			return false
		}
	}
	return true
}
