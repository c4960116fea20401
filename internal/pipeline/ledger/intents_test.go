package ledger_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// A plan recorded in two parts (the worker's copy-first path: the objects the
// row and the layout name, then the animations a listing found) takes as
// stale only the open moves neither part plans: the first part's keys, kept,
// are not discarded by the second part's recording, and a move the plan no
// longer has is.
func TestIntentsRecordedInTwoPartsKeepTheFirstPart(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	id, owner := "2d8f3e72-0a5b-4b4f-93e2-6f7a8b9c0d1e", "8a2d3c0f-4e5b-4d6c-9f80-1b2c3d4e5f60"
	env.InsertPhoto(t, id, &owner, "uploaded/j.jpg", nil, nil)
	prefix := "users/" + owner + "/"
	original := ledger.Intent{Kind: "original", OldKey: "uploaded/j.jpg", NewKey: prefix + "raw/" + id + "/original.jpg"}
	meta := ledger.Intent{Kind: "metadata", OldKey: "meta/j.json", NewKey: prefix + "meta/" + id + ".json"}
	anim := ledger.Intent{Kind: "animation", OldKey: "animated/j/a_loop.mp4", NewKey: prefix + "animated/" + id + "/a_loop.mp4"}
	gone := ledger.Intent{Kind: "animation", OldKey: "animated/j/b_loop.mp4", NewKey: prefix + "animated/" + id + "/b_loop.mp4"}

	// An earlier plan's moves, never committed.
	_, err := env.Store.ObjectMoveRecordIntents(ctx, id, "j", []ledger.Intent{original, meta, anim, gone})
	require.NoError(t, err)

	first, err := env.Store.ObjectMoveRecordIntentsKeeping(ctx, id, "j", []ledger.Intent{original, meta}, nil)
	require.NoError(t, err)
	require.Contains(t, first.Gens, original.NewKey)
	require.Contains(t, first.Gens, meta.NewKey)

	second, err := env.Store.ObjectMoveRecordIntentsKeeping(ctx, id, "j", []ledger.Intent{anim}, []string{original.NewKey, meta.NewKey})
	require.NoError(t, err)
	require.Contains(t, second.Gens, anim.NewKey)
	require.Len(t, second.Stale, 1, "only the move no part plans: %+v", second.Stale)
	require.Equal(t, gone.NewKey, second.Stale[0].NewKey)

	// Without keep, the first part would be stale too.
	none, err := env.Store.ObjectMoveRecordIntents(ctx, id, "j", []ledger.Intent{anim})
	require.NoError(t, err)
	require.Len(t, none.Stale, 3)
}

// F17: the second part of a plan whose photo has no animations records no
// intent at all. The open moves of an earlier plan (under the photo's former
// owner) that neither part plans must still come back stale, for the worker
// to discard; an empty list of intents must not read as "everything planned".
func TestIntentsSecondPartWithNoIntentsStillFindsStale(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	id := "5b0e7c1a-3f2d-4e8b-9a61-0c2d4e6f8a10"
	former, owner := "1c9d2e3f-4a5b-4c6d-8e7f-90a1b2c3d4e5", "7e6d5c4b-3a29-4180-9f7e-6d5c4b3a2910"
	env.InsertPhoto(t, id, &owner, "uploaded/k.jpg", nil, nil)
	was := ledger.Intent{Kind: "original", OldKey: "uploaded/k.jpg", NewKey: "users/" + former + "/raw/" + id + "/original.jpg"}
	now := ledger.Intent{Kind: "original", OldKey: "uploaded/k.jpg", NewKey: "users/" + owner + "/raw/" + id + "/original.jpg"}

	// The earlier plan, under the former owner, never committed.
	_, err := env.Store.ObjectMoveRecordIntents(ctx, id, "k", []ledger.Intent{was})
	require.NoError(t, err)

	_, err = env.Store.ObjectMoveRecordIntentsKeeping(ctx, id, "k", []ledger.Intent{now}, nil)
	require.NoError(t, err)
	second, err := env.Store.ObjectMoveRecordIntentsKeeping(ctx, id, "k", nil, []string{now.NewKey})
	require.NoError(t, err)
	require.Len(t, second.Stale, 1, "the former owner's move is stale: %+v", second.Stale)
	require.Equal(t, was.NewKey, second.Stale[0].NewKey)
}
