package appsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// What a listing of a user's photos owes: every photo the user owns, not
// deleted, whose row existed when the listing began, and with no change of
// owner or deletion overlapping it.
func TestUnlisted(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	user, other := "u", "v"
	photo := func(id string, owner *string, mut func(st *PhotoState)) PhotoState {
		st := PhotoState{ID: id, Owner: owner, Added: at(0)}
		if mut != nil {
			mut(&st)
		}
		return st
	}
	states := []PhotoState{
		photo("owned", &user, nil),
		photo("listed", &user, nil),
		photo("another user's", &other, nil),
		photo("ownerless", nil, nil),
		photo("deleted", &user, func(st *PhotoState) { st.Deleted = true }),
		photo("inserted during the listing", &user, func(st *PhotoState) { st.Added = at(10) }),
		photo("merged to the user during the listing", &user, func(st *PhotoState) {
			st.Events = []Event{{Kind: "change_owner", Start: at(9), End: at(11)}}
		}),
		photo("given to the user, still going", &user, func(st *PhotoState) { st.Events = []Event{{Kind: "give_owner", Start: at(5)}} }),
		photo("merged to the user long before", &user, func(st *PhotoState) {
			st.Events = []Event{{Kind: "change_owner", Start: at(1), End: at(2)}}
		}),
	}
	listed := map[string]bool{"listed": true, "another user's": true}
	require.Equal(t, []string{"owned", "merged to the user long before"}, Unlisted(states, user, listed, at(10), at(12)))
	require.Empty(t, Unlisted(states, other, listed, at(10), at(12)))
}
