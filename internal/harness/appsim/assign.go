package appsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The operator's side of the archived photos (issue 18, item 5): after
// manual review, `migratectl archived assign` gives an archived ownerless
// photo an owner (the row's owner set, its earlier status restored, one
// message enqueued) and a worker migrates it. The model must then have the
// photo owned, by exactly the owner the tool wrote, so that end_state wants
// it migrated under that owner. The photo stays locked from the moment its
// row is found archived until the model has learnt the row's owner:
// give_owner, remove_owner and the readers' judgement never see the model
// and the row disagree.

// AssignItem is one archived photo and the owner the operator gives it.
type AssignItem struct {
	PhotoID string
	OwnerID string
}

// errAssignNone: no archived ownerless photo to assign.
var errAssignNone = errors.New("no archived ownerless photo to assign")

// AssignArchived picks up to n archived ownerless photos, an existing user
// for each, and calls assign with them (the operator's tool); then the model
// takes, for each, the owner its row has afterwards (none if assign left it
// ownerless). It returns the photos the model now has owned.
func (s *Sim) AssignArchived(ctx context.Context, r *rand.Rand, n int, assign func(items []AssignItem) error) ([]AssignItem, error) {
	var locked []*Photo
	defer func() {
		for _, p := range locked {
			p.lock.Unlock()
		}
	}()
	var items []AssignItem
	for tries := 0; tries < 20*n && len(items) < n; tries++ {
		p := s.lockWhere(r, claimable)
		if p == nil {
			break
		}
		row, err := s.loadRow(ctx, p.ID)
		if err != nil || row.OwnerID != nil || row.Status != ledger.ArchivedStatus {
			p.lock.Unlock()
			if err != nil && !errors.Is(err, errNoRow) {
				return nil, err
			}
			continue
		}
		locked = append(locked, p)
		items = append(items, AssignItem{PhotoID: p.ID, OwnerID: s.user(r)})
	}
	if len(items) == 0 {
		return nil, errAssignNone
	}
	evs := make([]int, len(locked))
	for i, p := range locked {
		evs[i] = s.model.beginEvent(p, "archived_assign")
	}
	aerr := assign(items)
	var owned []AssignItem
	for i, p := range locked {
		// What the row says is what happened, whether assign succeeded,
		// failed or was interrupted.
		row, err := s.loadRow(context.WithoutCancel(ctx), p.ID)
		if err != nil {
			s.model.endEvent(p, evs[i])
			return owned, fmt.Errorf("photo %s after archived assign: %w", p.ID, err)
		}
		if row.OwnerID != nil {
			owner := *row.OwnerID
			s.model.mu.Lock()
			p.Owner = &owner
			s.model.mu.Unlock()
			owned = append(owned, AssignItem{PhotoID: p.ID, OwnerID: owner})
		}
		s.model.endEvent(p, evs[i])
	}
	return owned, aerr
}

// IsNoneToAssign reports whether AssignArchived found no photo to assign.
func IsNoneToAssign(err error) bool { return errors.Is(err, errAssignNone) }
