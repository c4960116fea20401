// Package ledgertest gives tests of other packages typed reads of the
// ledger's tables, and named ways to put a row into a state a test needs
// (a crash, an old row), so that every statement naming a keymigrate.* table
// lives in the ledger's tree (issue 19; internal/harness/archtest enforces
// it). It follows River's riverdbtest/testfactory: small helpers, a test's
// *testing.T first, failing the test on any error. The soak, which runs
// the product under faults and must decide what a failed read means, has
// its own reads (harness.go: a context first, the error returned) and the
// move log, a history of photo_moves (movelog.go).
//
// The reads are whole-table reads of a test's small ledger, filtered in Go by
// the caller (Count); the Store never runs them, so they are not in the
// ledger's plan test. Use a Store method where one answers the question.
package ledgertest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// Count is how many of rows keep keeps.
func Count[T any](rows []T, keep func(T) bool) int {
	n := 0
	for _, r := range rows {
		if keep(r) {
			n++
		}
	}
	return n
}

// PhotoMove is a row of keymigrate.photo_moves as tests read it; NULL text
// reads as "" (but OldStatus, where NULL is a status the row had).
type PhotoMove struct {
	PhotoID        string
	RunID          string
	State          string
	OldStatus      *string
	OldOriginalKey string
	LastReason     string
	LastError      string
	Attempts       int
	Rescued        int
	StartedAt      *time.Time
	SwappedAt      *time.Time
	CleanedAt      *time.Time
	CompactedAt    *time.Time
	ArchivedAt     *time.Time
}

const photoMoveSelect = `SELECT photo_id, coalesce(run_id, ''), state, old_status, coalesce(old_original_key, ''),
 coalesce(last_reason, ''), coalesce(last_error, ''), attempts, rescued, started_at, swapped_at, cleaned_at, compacted_at, archived_at
 FROM keymigrate.photo_moves`

func scanPhotoMove(row pgx.Row) (PhotoMove, error) {
	var m PhotoMove
	err := row.Scan(&m.PhotoID, &m.RunID, &m.State, &m.OldStatus, &m.OldOriginalKey, &m.LastReason, &m.LastError,
		&m.Attempts, &m.Rescued, &m.StartedAt, &m.SwappedAt, &m.CleanedAt, &m.CompactedAt, &m.ArchivedAt)
	return m, err
}

// PhotoMoves is every row of keymigrate.photo_moves, by photo id.
func PhotoMoves(t testing.TB, st *ledger.Store) []PhotoMove {
	t.Helper()
	return readAll(t, st, photoMoveSelect+` ORDER BY photo_id`, scanPhotoMove)
}

// PhotoMoveOf is the row of photoID; the test fails if there is none.
func PhotoMoveOf(t testing.TB, st *ledger.Store, photoID string) PhotoMove {
	t.Helper()
	m, err := scanPhotoMove(st.Pool().QueryRow(context.Background(), photoMoveSelect+` WHERE photo_id = $1`, photoID))
	require.NoError(t, err, "photo move of %s", photoID)
	return m
}

// PhotoMovesIn counts the rows in one of states.
func PhotoMovesIn(t testing.TB, st *ledger.Store, states ...string) int {
	t.Helper()
	return Count(PhotoMoves(t, st), func(m PhotoMove) bool {
		for _, s := range states {
			if m.State == s {
				return true
			}
		}
		return false
	})
}

// ObjectMove is a row of keymigrate.object_moves as tests read it.
type ObjectMove struct {
	NewKey         string
	PhotoID        string
	OldKey         string
	ETag           string
	VerifyMethod   string
	Size           int64
	CopiedAt       *time.Time
	VerifiedAt     *time.Time
	CommittedAt    *time.Time
	SupersededAt   *time.Time
	DeleteIntentAt *time.Time
	DeletedAt      *time.Time
}

const objectMoveSelect = `SELECT new_key, photo_id, old_key, coalesce(etag, ''), coalesce(verify_method, ''), size,
 copied_at, verified_at, committed_at, superseded_at, delete_intent_at, deleted_at FROM keymigrate.object_moves`

func scanObjectMove(row pgx.Row) (ObjectMove, error) {
	var o ObjectMove
	err := row.Scan(&o.NewKey, &o.PhotoID, &o.OldKey, &o.ETag, &o.VerifyMethod, &o.Size,
		&o.CopiedAt, &o.VerifiedAt, &o.CommittedAt, &o.SupersededAt, &o.DeleteIntentAt, &o.DeletedAt)
	return o, err
}

// ObjectMoves is every row of keymigrate.object_moves, by new key.
func ObjectMoves(t testing.TB, st *ledger.Store) []ObjectMove {
	t.Helper()
	return readAll(t, st, objectMoveSelect+` ORDER BY new_key`, scanObjectMove)
}

// ObjectMoveOf is the row of newKey; the test fails if there is none.
func ObjectMoveOf(t testing.TB, st *ledger.Store, newKey string) ObjectMove {
	t.Helper()
	o, err := scanObjectMove(st.Pool().QueryRow(context.Background(), objectMoveSelect+` WHERE new_key = $1`, newKey))
	require.NoError(t, err, "object move of %s", newKey)
	return o
}

// Failure is a row of keymigrate.failures as tests read it.
type Failure struct {
	PhotoID   string
	Reason    string
	Permanent bool
	Error     string
	Body      string
}

// Failures is every row of keymigrate.failures, in the order recorded.
func Failures(t testing.TB, st *ledger.Store) []Failure {
	t.Helper()
	return readAll(t, st, `SELECT coalesce(photo_id, ''), reason, permanent, error, coalesce(body, '') FROM keymigrate.failures ORDER BY id`,
		func(row pgx.Row) (Failure, error) {
			var f Failure
			err := row.Scan(&f.PhotoID, &f.Reason, &f.Permanent, &f.Error, &f.Body)
			return f, err
		})
}

// Run is a row of keymigrate.runs as tests read it.
type Run struct {
	RunID      string
	Kind       string
	Found      int64
	FinishedAt *time.Time
}

// Runs is every row of keymigrate.runs, by run id.
func Runs(t testing.TB, st *ledger.Store) []Run {
	t.Helper()
	return readAll(t, st, `SELECT run_id, kind, found, finished_at FROM keymigrate.runs ORDER BY run_id`,
		func(row pgx.Row) (Run, error) {
			var r Run
			err := row.Scan(&r.RunID, &r.Kind, &r.Found, &r.FinishedAt)
			return r, err
		})
}

// ShardsEnqueued is the enqueued count of each shard of runID, by shard.
func ShardsEnqueued(t testing.TB, st *ledger.Store, runID string) []int64 {
	t.Helper()
	return readAll(t, st, `SELECT enqueued FROM keymigrate.run_shards WHERE run_id = $1 ORDER BY shard`,
		func(row pgx.Row) (int64, error) {
			var n int64
			err := row.Scan(&n)
			return n, err
		}, runID)
}

// Assignments is every row of keymigrate.assignments, by source then photo.
func Assignments(t testing.TB, st *ledger.Store) []ledger.Assignment {
	t.Helper()
	return readAll(t, st, `SELECT photo_id, owner_id, run_id, old_status, assigned_at, assigned_by, source, enqueued_at
 FROM keymigrate.assignments ORDER BY source, photo_id`,
		func(row pgx.Row) (ledger.Assignment, error) {
			var a ledger.Assignment
			err := row.Scan(&a.PhotoID, &a.OwnerID, &a.RunID, &a.OldStatus, &a.AssignedAt, &a.AssignedBy, &a.Source, &a.EnqueuedAt)
			return a, err
		})
}

// Purge is a row of keymigrate.purges as tests read it.
type Purge struct {
	OldKey    string
	PhotoID   string
	DeletedAt *time.Time
}

// Purges is every row of keymigrate.purges, by old key.
func Purges(t testing.TB, st *ledger.Store) []Purge {
	t.Helper()
	return readAll(t, st, `SELECT old_key, photo_id, deleted_at FROM keymigrate.purges ORDER BY old_key`,
		func(row pgx.Row) (Purge, error) {
			var p Purge
			err := row.Scan(&p.OldKey, &p.PhotoID, &p.DeletedAt)
			return p, err
		})
}

// InventoryFile is a row of keymigrate.inventory_files as tests read it.
type InventoryFile struct {
	LoadedAt *time.Time
	Rows     int64 // 0 while not loaded
}

// InventoryFiles is every row of keymigrate.inventory_files.
func InventoryFiles(t testing.TB, st *ledger.Store) []InventoryFile {
	t.Helper()
	return readAll(t, st, `SELECT loaded_at, coalesce(rows, 0) FROM keymigrate.inventory_files`,
		func(row pgx.Row) (InventoryFile, error) {
			var f InventoryFile
			err := row.Scan(&f.LoadedAt, &f.Rows)
			return f, err
		})
}

// Tally is a count(*) of one ledger table.
type Tally string

// The tables a test counts whole.
const (
	TallyPhotoMoves       Tally = `SELECT count(*) FROM keymigrate.photo_moves`
	TallyObjectMoves      Tally = `SELECT count(*) FROM keymigrate.object_moves`
	TallyRuns             Tally = `SELECT count(*) FROM keymigrate.runs`
	TallyWorkers          Tally = `SELECT count(*) FROM keymigrate.workers`
	TallyInventoryObjects Tally = `SELECT count(*) FROM keymigrate.inventory_objects`
	// TallySchemaVersions counts the distinct migrations goose applied.
	TallySchemaVersions Tally = `SELECT count(DISTINCT version_id) FROM keymigrate.schema_version WHERE version_id > 0`
)

// Rows is the sum of tallies, read in one statement.
func Rows(t testing.TB, st *ledger.Store, tallies ...Tally) int {
	t.Helper()
	require.NotEmpty(t, tallies)
	q := "SELECT 0"
	for _, c := range tallies {
		q += " + (" + string(c) + ")"
	}
	var n int
	require.NoError(t, st.Pool().QueryRow(context.Background(), q).Scan(&n), "count %v", tallies)
	return n
}

// InventoryObjectsSize is the on-disk size of keymigrate.inventory_objects
// after a VACUUM ANALYZE: its heap, its indexes and the two with TOAST.
func InventoryObjectsSize(t testing.TB, st *ledger.Store) (heap, index, total int64) {
	t.Helper()
	ctx := context.Background()
	_, err := st.Pool().Exec(ctx, `VACUUM ANALYZE keymigrate.inventory_objects`)
	require.NoError(t, err)
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT pg_relation_size('keymigrate.inventory_objects'), pg_indexes_size('keymigrate.inventory_objects'),
 pg_total_relation_size('keymigrate.inventory_objects')`).Scan(&heap, &index, &total))
	return heap, index, total
}

func readAll[T any](t testing.TB, st *ledger.Store, q string, scan func(pgx.Row) (T, error), args ...any) []T {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), q, args...)
	require.NoError(t, err, "read the ledger")
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		require.NoError(t, err, "read the ledger")
		out = append(out, v)
	}
	require.NoError(t, rows.Err(), "read the ledger")
	return out
}

// AssignmentOf is the assignment of photoID; the test fails if there is none.
func AssignmentOf(t testing.TB, st *ledger.Store, photoID string) ledger.Assignment {
	t.Helper()
	for _, a := range Assignments(t, st) {
		if a.PhotoID == photoID {
			return a
		}
	}
	require.Failf(t, "no assignment", "photo %s", photoID)
	return ledger.Assignment{}
}

// FirstCommitted is the committed object move with the least new key; the
// test fails if there is none.
func FirstCommitted(t testing.TB, st *ledger.Store) ObjectMove {
	t.Helper()
	for _, o := range ObjectMoves(t, st) {
		if o.CommittedAt != nil {
			return o
		}
	}
	require.Fail(t, "no committed object move")
	return ObjectMove{}
}
