package ledgertest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// The soak's reads answer what its own statements answered: each state
// filter, count and "no row" case on a ledger of three photos.
func TestHarnessReadsAnswerTheSoaksQuestions(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	st := env.Store
	ledgertest.RecordRuns(t, st, "r1")
	owner := "7d4c1c52-0000-4000-8000-000000000001"
	var photos []ledger.Photo
	for _, id := range []string{"p1", "p2", "p3"} {
		photos = append(photos, ledger.Photo{ID: id, OwnerID: &owner})
	}
	require.NoError(t, st.PhotoMoveRecordEnqueued(ctx, "r1", photos))
	_, err := st.PhotoMoveBeginAttempt(ctx, "p2", "r1", "w1")
	require.NoError(t, err)
	ledgertest.FailPhotoMove(t, st, "p3", time.Minute)

	all, err := ledgertest.ReadMoveStates(ctx, st)
	require.NoError(t, err)
	require.Equal(t, []ledgertest.MoveState{
		{PhotoID: "p1", State: ledger.StateEnqueued},
		{PhotoID: "p2", State: ledger.StateInProgress, Attempts: 1},
		{PhotoID: "p3", State: ledger.StateFailed},
	}, all)
	open, err := ledgertest.ReadMoveStates(ctx, st, ledger.StateEnqueued, ledger.StateInProgress)
	require.NoError(t, err)
	require.Equal(t, all[:2], open)

	n, err := ledgertest.CountMovesIn(ctx, st, ledger.StateInProgress)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	byState, err := ledgertest.CountMovesByState(ctx, st)
	require.NoError(t, err)
	require.Equal(t, []ledgertest.StateCount{{State: ledger.StateEnqueued, N: 1}, {State: ledger.StateFailed, N: 1}, {State: ledger.StateInProgress, N: 1}}, byState)

	state, swapped, err := ledgertest.ReadSwapOf(ctx, st, "p1")
	require.NoError(t, err)
	require.Equal(t, ledger.StateEnqueued, state)
	require.Nil(t, swapped)
	_, _, err = ledgertest.ReadSwapOf(ctx, st, "nope")
	require.ErrorIs(t, err, pgx.ErrNoRows)

	lastErrors, err := ledgertest.ReadLastErrors(ctx, st)
	require.NoError(t, err)
	require.Empty(t, lastErrors)
	_, err = ledgertest.FirstLegacyDeletion(ctx, st, "uploaded/p1.jpg")
	require.ErrorIs(t, err, pgx.ErrNoRows)

	inFlight, err := ledgertest.PhotosInFlight(ctx, st, 32)
	require.NoError(t, err)
	require.Equal(t, []string{"p2"}, inFlight)

	// A copy recorded (its ETag, the source's) and a committed one.
	require.NoError(t, st.ObjectMoveRecordCopies(ctx, "p2", []ledger.ObjectMove{
		{Kind: "original", OldKey: "uploaded/p2.jpg", NewKey: "users/o/raw/p2/original.jpg", SourceETag: `"s2"`, ETag: `"c2"`, Size: 1}}))
	rec, err := ledgertest.ReadCopyAt(ctx, st, "p2", "users/o/raw/p2/original.jpg")
	require.NoError(t, err)
	require.True(t, rec.Found)
	require.Equal(t, `"s2"`, rec.SourceETag)
	require.False(t, rec.Committed)
	require.False(t, rec.CopiedAt.IsZero(), "the copy's record time is read")
	rec, err = ledgertest.ReadCopyAt(ctx, st, "p1", "users/o/raw/p2/original.jpg")
	require.NoError(t, err)
	require.False(t, rec.Found, "another photo's copy is not p1's")
	ledgertest.RecordCommittedMove(t, st, "p1", "users/o/raw/p1/original.jpg", "etag")
	rec, err = ledgertest.ReadCommittedCopyOf(ctx, st, "p1", "uploaded/p1.jpg")
	require.NoError(t, err)
	require.True(t, rec.Found)
	require.True(t, rec.Committed)
	rec, err = ledgertest.ReadCommittedCopyOf(ctx, st, "p2", "uploaded/p2.jpg")
	require.NoError(t, err)
	require.False(t, rec.Found, "p2's copy is not committed")

	id, checkpoint, err := ledgertest.UnfinishedProducerRun(ctx, st, "")
	require.NoError(t, err)
	require.Equal(t, "r1", id)
	require.Empty(t, checkpoint)
	_, _, err = ledgertest.UnfinishedProducerRun(ctx, st, "r2")
	require.ErrorIs(t, err, pgx.ErrNoRows)
}
