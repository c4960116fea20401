package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The source versions a copy was pinned to (F12 in docs/soak-findings.md)
// are what lets the next attempt know keymigrate's own copy whose response
// was lost: they belong to the photo's open move only, the last eight are
// kept, and they go when the move commits (its recorded ETag then names the
// copy) or when a discarded move is planned again (what was at the key then
// was judged someone else's, or deleted).
func TestPinnedSourcesBelongToTheOpenMoveOnly(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	id, owner := "0c7e2d61-9c4f-4a3e-b2d1-5e6f7a8b9c0d", "7f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	env.InsertPhoto(t, id, &owner, "uploaded/k.jpg", nil, nil)
	newKey := "users/" + owner + "/raw/" + id + "/original.jpg"
	intent := []ledger.Intent{{Kind: "original", OldKey: "uploaded/k.jpg", NewKey: newKey}}
	pins := func() []ledger.SourcePin {
		t.Helper()
		o, ok, err := env.Store.ObjectMoveGetCopy(ctx, newKey)
		require.NoError(t, err)
		require.True(t, ok)
		return o.Pins
	}
	_, err := env.Store.ObjectMoveRecordIntents(ctx, id, "k", intent)
	require.NoError(t, err)
	require.Empty(t, pins())

	for i := range 10 {
		require.NoError(t, env.Store.ObjectMovePinSource(ctx, id, newKey, ledger.SourcePin{ETag: fmt.Sprintf(`"e%d"`, i), Size: int64(100 + i)}))
	}
	require.NoError(t, env.Store.ObjectMovePinSource(ctx, "1c7e2d61-9c4f-4a3e-b2d1-5e6f7a8b9c0d", newKey, ledger.SourcePin{ETag: `"other"`, Size: 1}))
	got := pins()
	require.Len(t, got, 8, "the last eight are kept")
	require.Equal(t, ledger.SourcePin{ETag: `"e2"`, Size: 102}, got[0])
	require.Equal(t, ledger.SourcePin{ETag: `"e9"`, Size: 109}, got[7])
	o, _, err := env.Store.ObjectMoveGetCopy(ctx, newKey)
	require.NoError(t, err)
	require.True(t, o.PinnedAs(`"e9"`, 109))
	require.False(t, o.PinnedAs(`"e9"`, 110), "the size must match too")
	require.False(t, o.PinnedAs(`"e1"`, 101), "dropped: older than the last eight")
	require.False(t, o.PinnedAs(`"other"`, 1), "another photo's pin is not recorded on this photo's move")
	require.False(t, o.PinnedAs("", 0))

	claimed, busy, err := env.Store.ObjectMoveClaimDiscards(ctx, []ledger.DiscardClaim{{NewKey: newKey}}, time.Minute)
	require.NoError(t, err)
	require.Empty(t, busy)
	require.Len(t, claimed, 1)
	require.NoError(t, env.Store.ObjectMoveSettleDiscards(ctx, claimed))
	rec, err := env.Store.ObjectMoveRecordIntents(ctx, id, "k", intent)
	require.NoError(t, err)
	require.Empty(t, pins(), "a discarded move planned again starts with no pins")
	require.Equal(t, int64(1), rec.Gens[newKey], "the discard's generation, as the swap must carry it")

	require.NoError(t, env.Store.ObjectMovePinSource(ctx, id, newKey, ledger.SourcePin{ETag: `"e10"`, Size: 110}))
	require.Len(t, pins(), 1)
	out, err := env.Store.PhotoMoveSwap(ctx, ledger.SwapInput{
		PhotoID: id, RunID: "r", OwnerID: owner, JobID: "k",
		Old:     ledger.Keys{Original: "uploaded/k.jpg"},
		New:     ledger.Keys{Original: newKey},
		Objects: []ledger.ObjectMove{{Kind: "original", OldKey: "uploaded/k.jpg", NewKey: newKey, Size: 110, SourceETag: `"e10"`, ETag: `"e10"`, DiscardGen: rec.Gens[newKey]}},
	})
	require.NoError(t, err)
	require.Equal(t, ledger.Swapped, out)
	require.Empty(t, pins(), "a committed move keeps no pins: its ETag names the copy")
	require.NoError(t, env.Store.ObjectMovePinSource(ctx, id, newKey, ledger.SourcePin{ETag: `"e11"`, Size: 111}))
	require.Empty(t, pins(), "nor takes new ones")
}
