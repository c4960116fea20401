package soak

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
)

// Found by the 30-minute soak (F16, seed 249867): the scheduled `archived
// purge` was killed by its time limit, so it printed no report, and
// needed_legacy_kept, which excused only the keys a purge reported, flagged
// every legacy object the purge had deleted (and recorded) as lost. The
// check reads what the ledger records purge deleted and handled as well;
// a needed key gone with no recorded purge is still a violation.
func TestNeededLegacyKeptExcusesWhatTheLedgerRecordsPurgeDeleted(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	job, other := uuid.NewString(), uuid.NewString()
	purgedID, lostID := uuid.NewString(), uuid.NewString()
	orig, thumb := "uploaded/"+job+".jpg", "thumbnails/"+job+".jpg"
	lost := "uploaded/" + other + ".jpg"
	env.InsertPhoto(t, purgedID, nil, orig, nil, &thumb)
	env.InsertPhoto(t, lostID, nil, lost, nil, nil)
	// A killed purge's record: both objects deleted and recorded (no
	// report). Nothing was ever put in the bucket: all three keys are gone.
	require.NoError(t, env.Store.PurgeBegin(ctx, purgedID,
		map[string]string{orig: `"e1"`, thumb: `"e2"`}, map[string]int64{orig: 1, thumb: 1}))
	require.NoError(t, env.Store.PurgeFinish(ctx, purgedID, []string{orig, thumb}, true))

	r := &Runner{env: env}
	states := map[string]appsim.PhotoState{purgedID: {ID: purgedID}, lostID: {ID: lostID}}
	require.NoError(t, r.checkLegacy(ctx, states))
	var flagged []string
	for _, v := range r.violations {
		require.Equal(t, InvLegacyKept, v.Invariant)
		flagged = append(flagged, v.Key)
	}
	require.Equal(t, []string{lost}, flagged, "only the key no purge recorded deleting: %+v", r.violations)
}

// The ledger's word on what purge handled excuses a gone key only for a
// photo purge may handle: one the model saw without an owner. A purge that
// handled an owned photo (a defect in its selection) is a violation.
func TestAPurgeOfAPhotoThatNeverLostItsOwnerIsAViolation(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	owner := uuid.NewString()
	ownedID, givenID := uuid.NewString(), uuid.NewString()
	orig, other := "uploaded/"+uuid.NewString()+".jpg", "uploaded/"+uuid.NewString()+".jpg"
	env.InsertPhoto(t, ownedID, &owner, orig, nil, nil)
	env.InsertPhoto(t, givenID, &owner, other, nil, nil)
	for id, k := range map[string]string{ownedID: orig, givenID: other} {
		require.NoError(t, env.Store.PurgeBegin(ctx, id, map[string]string{k: `"e"`}, map[string]int64{k: 1}))
		require.NoError(t, env.Store.PurgeFinish(ctx, id, []string{k}, true))
	}

	r := &Runner{env: env}
	states := map[string]appsim.PhotoState{
		ownedID: {ID: ownedID, Owner: &owner},
		// Ownerless when archived and purged, given an owner afterwards.
		givenID: {ID: givenID, Owner: &owner, Events: []appsim.Event{{Kind: "give_owner"}}},
	}
	require.NoError(t, r.checkLegacy(ctx, states))
	var flagged []string
	for _, v := range r.violations {
		require.Equal(t, InvLegacyKept, v.Invariant)
		flagged = append(flagged, v.PhotoID)
	}
	require.Contains(t, flagged, ownedID, "%+v", r.violations)
	require.NotContains(t, flagged, givenID, "%+v", r.violations)
}
