package ledgertest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The helpers below write the ledger behind the Store's back, to set up the
// state a test is about: a row left by an earlier run, an older row, a crash
// between two steps. Each names the state it makes; none is a path the
// product takes.

func exec(t testing.TB, st *ledger.Store, q string, args ...any) int64 {
	t.Helper()
	tag, err := st.Pool().Exec(context.Background(), q, args...)
	require.NoError(t, err, "set up the ledger")
	return tag.RowsAffected()
}

// seconds is d as a float for `$n * interval '1 second'`.
func seconds(d time.Duration) float64 { return d.Seconds() }

// FailFirstPhotos records the first n photos (by the application's id
// order) as failed, with no run: a ledger an earlier run left failures in.
func FailFirstPhotos(t testing.TB, st *ledger.Store, n int) {
	t.Helper()
	exec(t, st, `INSERT INTO keymigrate.photo_moves (photo_id, state) SELECT id::text, 'failed' FROM photos ORDER BY id LIMIT $1`, n)
}

// RecordRolledBack records photoID as rolled back by runID (now), as an
// operator's rollback of an earlier run leaves it.
func RecordRolledBack(t testing.TB, st *ledger.Store, photoID, runID string) {
	t.Helper()
	exec(t, st, `
INSERT INTO keymigrate.photo_moves (photo_id, run_id, state, rolled_back_at) VALUES ($1, $2, 'rolled_back', clock_timestamp())`, photoID, runID)
}

// BackdateArchived moves the archiving of photoIDs age into the past.
func BackdateArchived(t testing.TB, st *ledger.Store, photoIDs []string, age time.Duration) {
	t.Helper()
	exec(t, st, `UPDATE keymigrate.photo_moves SET archived_at = now() - $2 * interval '1 second' WHERE photo_id = ANY($1)`, photoIDs, seconds(age))
}

// BackdateSwapped moves the swap of every photo move age into the past.
func BackdateSwapped(t testing.TB, st *ledger.Store, age time.Duration) {
	t.Helper()
	exec(t, st, `UPDATE keymigrate.photo_moves SET swapped_at = now() - $1 * interval '1 second'`, seconds(age))
}

// BackdateCommittedExcept moves the commit of every object move but the one
// of oldKey age into the past.
func BackdateCommittedExcept(t testing.TB, st *ledger.Store, oldKey string, age time.Duration) {
	t.Helper()
	exec(t, st, `UPDATE keymigrate.object_moves SET committed_at = now() - $2 * interval '1 second' WHERE old_key <> $1`, oldKey, seconds(age))
}

// SetCommittedAt sets the commit time of newKey's move and says how many
// rows it changed.
func SetCommittedAt(t testing.TB, st *ledger.Store, newKey string, at time.Time) int64 {
	t.Helper()
	return exec(t, st, `UPDATE keymigrate.object_moves SET committed_at = $2 WHERE new_key = $1`, newKey, at)
}

// RecopyNow makes newKey's move copied, verified and committed now: a copy
// keymigrate re-made.
func RecopyNow(t testing.TB, st *ledger.Store, newKey string) {
	t.Helper()
	exec(t, st, `UPDATE keymigrate.object_moves SET copied_at = now(), verified_at = now(), committed_at = now() WHERE new_key = $1`, newKey)
}

// PostponeCleaned moves the cleaning of the first n cleaned photos (by photo
// id) by into the future: they stay inside any compaction window.
func PostponeCleaned(t testing.TB, st *ledger.Store, n int, by time.Duration) {
	t.Helper()
	exec(t, st, `UPDATE keymigrate.photo_moves SET cleaned_at = now() + $2 * interval '1 second'
 WHERE photo_id IN (SELECT photo_id FROM keymigrate.photo_moves WHERE state = 'cleaned' ORDER BY photo_id LIMIT $1)`, n, seconds(by))
}

// RecordRuns records runIDs as started producer runs with nothing else set,
// as a test of photo moves needs their runs to exist.
func RecordRuns(t testing.TB, st *ledger.Store, runIDs ...string) {
	t.Helper()
	exec(t, st, `INSERT INTO keymigrate.runs (run_id) SELECT unnest($1::text[])`, runIDs)
}

// FailPhotoMove makes photoID's move failed ago in the past, as a dead
// letter the DLQ consumer recorded leaves it.
func FailPhotoMove(t testing.TB, st *ledger.Store, photoID string, ago time.Duration) {
	t.Helper()
	exec(t, st, `UPDATE keymigrate.photo_moves SET state = 'failed', failed_at = now() - $2 * interval '1 second' WHERE photo_id = $1`, photoID, seconds(ago))
}

// BackdateUpdated moves the last change of photoID's move age into the
// past: a photo nobody has touched for that long.
func BackdateUpdated(t testing.TB, st *ledger.Store, photoID string, age time.Duration) {
	t.Helper()
	exec(t, st, `UPDATE keymigrate.photo_moves SET updated_at = now() - $2 * interval '1 second' WHERE photo_id = $1`, photoID, seconds(age))
}

// RecordCommittedMove records a committed move of photoID's original to
// newKey (from uploaded/<photoID>.jpg, 1 byte), proven by verifyMethod.
func RecordCommittedMove(t testing.TB, st *ledger.Store, photoID, newKey, verifyMethod string) {
	t.Helper()
	exec(t, st, `
INSERT INTO keymigrate.object_moves (new_key, photo_id, kind, old_key, size, verify_method, committed_at)
VALUES ($1, $2, 'original', 'uploaded/'||$2||'.jpg', 1, $3, now())`, newKey, photoID, verifyMethod)
}
