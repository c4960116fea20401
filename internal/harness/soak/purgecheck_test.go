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
