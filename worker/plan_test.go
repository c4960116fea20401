package worker

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/failure"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

const (
	owner = "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	photo = "0b7e2d61-9c4f-4a3e-b2d1-5e6f7a8b9c0d"
)

func ptr(s string) *string { return &s }

func TestPlanRow(t *testing.T) {
	t.Parallel()
	p := ledger.Photo{ID: photo, OwnerID: ptr(owner), Keys: ledger.Keys{
		Original: "uploaded/j1.png", Processed: ptr("restored/j1/r9.jpg"), Thumbnail: ptr("thumbnails/j1.jpg"),
	}}
	plan, err := planRow(p)
	require.NoError(t, err)
	require.True(t, plan.RowChanges)
	require.Equal(t, "j1", plan.JobID)
	require.Equal(t, "users/"+owner+"/raw/"+photo+"/original.png", plan.New.Original)
	require.Equal(t, "users/"+owner+"/processed/"+photo+"/restored.jpg", *plan.New.Processed)
	require.Equal(t, "users/"+owner+"/thumbs/"+photo+".jpg", *plan.New.Thumbnail)
	require.Len(t, plan.Moves, 3)

	// Partly migrated: only the legacy column moves; NULL columns stay NULL.
	p2 := ledger.Photo{ID: photo, OwnerID: ptr(owner), Keys: ledger.Keys{
		Original: "users/" + owner + "/raw/" + photo + "/original.png", Thumbnail: ptr("thumbnails/j1.jpg"),
	}}
	plan, err = planRow(p2)
	require.NoError(t, err)
	require.Len(t, plan.Moves, 1)
	require.Nil(t, plan.New.Processed)
	require.Equal(t, p2.Original, plan.New.Original)

	// Already user-scoped: nothing to move, no swap.
	p3 := ledger.Photo{ID: photo, OwnerID: ptr(owner), Keys: ledger.Keys{Original: p2.Original}}
	plan, err = planRow(p3)
	require.NoError(t, err)
	require.False(t, plan.RowChanges)
	require.Empty(t, plan.Moves)
}

func TestPlanRowRefuses(t *testing.T) {
	t.Parallel()
	other := "1f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	cases := []struct {
		name   string
		p      ledger.Photo
		reason failure.Reason
	}{
		{"bad owner", ledger.Photo{ID: photo, OwnerID: ptr("../x"), Keys: ledger.Keys{Original: "uploaded/j.jpg"}}, failure.InvalidOwner},
		{"empty owner", ledger.Photo{ID: photo, OwnerID: ptr(""), Keys: ledger.Keys{Original: "uploaded/j.jpg"}}, failure.InvalidOwner},
		{"unknown layout", ledger.Photo{ID: photo, OwnerID: ptr(owner), Keys: ledger.Keys{Original: "misc/j.jpg"}}, failure.UnrecognisedKey},
		{"wrong column", ledger.Photo{ID: photo, OwnerID: ptr(owner), Keys: ledger.Keys{Original: "thumbnails/j.jpg"}}, failure.UnrecognisedKey},
		{"two jobs", ledger.Photo{ID: photo, OwnerID: ptr(owner), Keys: ledger.Keys{Original: "uploaded/a.jpg", Thumbnail: ptr("thumbnails/b.jpg")}}, failure.UnrecognisedKey},
		{"other user's key", ledger.Photo{ID: photo, OwnerID: ptr(owner), Keys: ledger.Keys{Original: "users/" + other + "/raw/" + photo + "/original.jpg"}}, failure.UnrecognisedKey},
	}
	for _, c := range cases {
		_, err := planRow(c.p)
		var pe *failure.PermanentError
		require.True(t, errors.As(err, &pe), "%s: %v", c.name, err)
		require.Equal(t, c.reason, pe.Reason, c.name)
	}
}
