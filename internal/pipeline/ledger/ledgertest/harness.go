package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The reads below are for a harness that runs the whole product under
// injected faults (internal/harness/soak) rather than for a test: they take
// a context and return the error instead of failing a test, because a read
// made during a Postgres outage is expected to fail, and the harness decides
// what that means (skip a progress line, count a failed rollback, stop the
// run). Each is the statement the soak ran itself before issue 19 moved it
// here, unchanged, so that the soak's checks mean what they meant.

// MoveState is a photo move's state as the soak reads it.
type MoveState struct {
	PhotoID    string
	State      ledger.State
	Attempts   int
	LastReason string // "" when NULL
}

// ReadMoveStates is every photo move in one of states (every one when
// states is empty), by photo id.
func ReadMoveStates(ctx context.Context, st *ledger.Store, states ...ledger.State) ([]MoveState, error) {
	q := `SELECT photo_id, state, attempts, coalesce(last_reason, '') FROM keymigrate.photo_moves`
	var args []any
	if len(states) > 0 {
		q += ` WHERE state = ANY($1)`
		args = append(args, states)
	}
	return query(ctx, st, "photo move states", q+` ORDER BY photo_id`, func(row pgx.Row) (MoveState, error) {
		var m MoveState
		err := row.Scan(&m.PhotoID, &m.State, &m.Attempts, &m.LastReason)
		return m, err
	}, args...)
}

// CountMovesIn is how many photo moves are in one of states.
func CountMovesIn(ctx context.Context, st *ledger.Store, states ...ledger.State) (int, error) {
	var n int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.photo_moves WHERE state = ANY($1)`, states).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the photo moves in %v: %w", states, err)
	}
	return n, nil
}

// StateCount is how many photo moves are in State.
type StateCount struct {
	State ledger.State
	N     int
}

// CountMovesByState is the number of photo moves in each state that has
// any, by state.
func CountMovesByState(ctx context.Context, st *ledger.Store) ([]StateCount, error) {
	return query(ctx, st, "photo moves by state", `SELECT state, count(*) FROM keymigrate.photo_moves GROUP BY state ORDER BY state`,
		func(row pgx.Row) (StateCount, error) {
			var c StateCount
			err := row.Scan(&c.State, &c.N)
			return c, err
		})
}

// ReadSwapOf is photoID's state and when it was last swapped (nil: never);
// pgx.ErrNoRows (wrapped) when the ledger has no row for it.
func ReadSwapOf(ctx context.Context, st *ledger.Store, photoID string) (ledger.State, *time.Time, error) {
	var state ledger.State
	var swapped *time.Time
	if err := st.Pool().QueryRow(ctx, `SELECT state, swapped_at FROM keymigrate.photo_moves WHERE photo_id = $1`, photoID).Scan(&state, &swapped); err != nil {
		return "", nil, fmt.Errorf("read the swap of photo %s: %w", photoID, err)
	}
	return state, swapped, nil
}

// ReadLastErrors is the last error of every photo move that has one, by
// photo id.
func ReadLastErrors(ctx context.Context, st *ledger.Store) (map[string]string, error) {
	type lastError struct{ photoID, err string }
	rows, err := query(ctx, st, "last errors", `SELECT photo_id, coalesce(last_error, '') FROM keymigrate.photo_moves WHERE last_error IS NOT NULL`,
		func(row pgx.Row) (lastError, error) {
			var e lastError
			err := row.Scan(&e.photoID, &e.err)
			return e, err
		})
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(rows))
	for _, e := range rows {
		out[e.photoID] = e.err
	}
	return out, nil
}

// LegacyDeletion is the recorded move cleanup deleted a legacy key under.
type LegacyDeletion struct {
	PhotoID   string
	State     ledger.State // the photo move's state now; "" when it has none
	DeletedAt time.Time
}

// FirstLegacyDeletion is the earliest recorded deletion of oldKey;
// pgx.ErrNoRows (wrapped) when no recorded move deleted it.
func FirstLegacyDeletion(ctx context.Context, st *ledger.Store, oldKey string) (LegacyDeletion, error) {
	var d LegacyDeletion
	err := st.Pool().QueryRow(ctx, `
SELECT o.photo_id, coalesce(p.state, ''), o.deleted_at FROM keymigrate.object_moves o LEFT JOIN keymigrate.photo_moves p ON p.photo_id = o.photo_id
 WHERE o.old_key = $1 AND o.deleted_at IS NOT NULL ORDER BY o.deleted_at LIMIT 1`, oldKey).Scan(&d.PhotoID, &d.State, &d.DeletedAt)
	if err != nil {
		return LegacyDeletion{}, fmt.Errorf("read the deletion of %s: %w", oldKey, err)
	}
	return d, nil
}

// CopyPathCounts are the committed object moves (and their photos) by the
// path that proved them: copy first (a verify method ending in its suffix)
// or careful (any other).
type CopyPathCounts struct {
	CopyFirstObjects, CopyFirstPhotos int
	CarefulObjects, CarefulPhotos     int
}

// CountCopyPaths counts the committed object moves that have a verify
// method by path; copyFirstSuffix ends the verify method of a move proven
// by copy first.
func CountCopyPaths(ctx context.Context, st *ledger.Store, copyFirstSuffix string) (CopyPathCounts, error) {
	var c CopyPathCounts
	err := st.Pool().QueryRow(ctx, `
SELECT count(*) FILTER (WHERE verify_method LIKE '%' || $1),
       count(DISTINCT photo_id) FILTER (WHERE verify_method LIKE '%' || $1),
       count(*) FILTER (WHERE verify_method NOT LIKE '%' || $1),
       count(DISTINCT photo_id) FILTER (WHERE verify_method NOT LIKE '%' || $1)
FROM keymigrate.object_moves WHERE committed_at IS NOT NULL AND verify_method IS NOT NULL`, copyFirstSuffix).
		Scan(&c.CopyFirstObjects, &c.CopyFirstPhotos, &c.CarefulObjects, &c.CarefulPhotos)
	if err != nil {
		return CopyPathCounts{}, fmt.Errorf("count the moves by copy path: %w", err)
	}
	return c, nil
}

// CountLargeCopyPaths counts the committed object moves of at least minSize
// bytes by the path that proved them: copied first (verify_method ends with
// copyFirstSuffix) or careful (every other).
func CountLargeCopyPaths(ctx context.Context, st *ledger.Store, minSize int64, copyFirstSuffix string) (copiedFirst, careful int, err error) {
	err = st.Pool().QueryRow(ctx, `
SELECT count(*) FILTER (WHERE verify_method LIKE '%' || $2), count(*) FILTER (WHERE verify_method NOT LIKE '%' || $2)
FROM keymigrate.object_moves WHERE committed_at IS NOT NULL AND verify_method IS NOT NULL AND size >= $1`, minSize, copyFirstSuffix).
		Scan(&copiedFirst, &careful)
	if err != nil {
		return 0, 0, fmt.Errorf("count the large moves by copy path: %w", err)
	}
	return copiedFirst, careful, nil
}

// UnfinishedProducerRun is the latest unfinished producer run (runID "":
// any; else only runID) and its checkpoint ("" when none); pgx.ErrNoRows
// (wrapped) when there is none.
func UnfinishedProducerRun(ctx context.Context, st *ledger.Store, runID string) (id, checkpoint string, err error) {
	err = st.Pool().QueryRow(ctx, `
SELECT run_id, coalesce(checkpoint, '') FROM keymigrate.runs
 WHERE kind = 'producer' AND finished_at IS NULL AND ($1 = '' OR run_id = $1)
 ORDER BY started_at DESC LIMIT 1`, runID).Scan(&id, &checkpoint)
	if err != nil {
		return "", "", fmt.Errorf("read the unfinished producer run %q: %w", runID, err)
	}
	return id, checkpoint, nil
}

// PhotosInFlight is up to limit photos a worker holds right now
// (in_progress), for the application simulator's writes to aim at.
func PhotosInFlight(ctx context.Context, st *ledger.Store, limit int) ([]string, error) {
	return query(ctx, st, "photos in flight", `SELECT photo_id FROM keymigrate.photo_moves WHERE state = $1 LIMIT $2`,
		func(row pgx.Row) (string, error) {
			var id string
			err := row.Scan(&id)
			return id, err
		}, ledger.StateInProgress, limit)
}

// CopyRecord is the ledger's record of one copy: the source version (ETag)
// it stands for, when the copy was recorded (zero if not), and whether it is
// committed. Found is false when the ledger has no such copy.
type CopyRecord struct {
	Found      bool
	SourceETag string
	CopiedAt   time.Time
	Committed  bool
}

// ReadCopyAt is the ledger's record of photoID's copy at newKey (not
// discarded).
func ReadCopyAt(ctx context.Context, st *ledger.Store, photoID, newKey string) (CopyRecord, error) {
	return readCopyRecord(ctx, st, `
SELECT coalesce(source_etag, ''), copied_at, committed_at IS NOT NULL FROM keymigrate.object_moves
 WHERE new_key = $1 AND photo_id = $2 AND discarded_at IS NULL`, newKey, photoID)
}

// ReadCommittedCopyOf is the ledger's newest committed record of photoID's
// copy of legacy key oldKey.
func ReadCommittedCopyOf(ctx context.Context, st *ledger.Store, photoID, oldKey string) (CopyRecord, error) {
	return readCopyRecord(ctx, st, `
SELECT coalesce(source_etag, ''), copied_at, true FROM keymigrate.object_moves
 WHERE old_key = $1 AND photo_id = $2 AND discarded_at IS NULL AND committed_at IS NOT NULL
 ORDER BY committed_at DESC LIMIT 1`, oldKey, photoID)
}

func readCopyRecord(ctx context.Context, st *ledger.Store, q string, args ...any) (CopyRecord, error) {
	rec := CopyRecord{Found: true}
	var copiedAt *time.Time
	err := st.Pool().QueryRow(ctx, q, args...).Scan(&rec.SourceETag, &copiedAt, &rec.Committed)
	if errors.Is(err, pgx.ErrNoRows) {
		return CopyRecord{}, nil
	}
	if err != nil {
		return CopyRecord{}, fmt.Errorf("the ledger's record of a copy: %w", err)
	}
	if copiedAt != nil {
		rec.CopiedAt = *copiedAt
	}
	return rec, nil
}

func query[T any](ctx context.Context, st *ledger.Store, what, q string, scan func(pgx.Row) (T, error), args ...any) ([]T, error) {
	rows, err := st.Pool().Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read the %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("read the %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the %s: %w", what, err)
	}
	return out, nil
}

// PurgedByLedger is what the ledger records `archived purge` deleted: the
// legacy keys whose deletion it recorded, and the photos it handled (those
// it recorded a deletion for, or marked purged). The soak excuses a needed
// legacy key gone by these, not only by a purge's printed report, which a
// purge killed mid-run never prints.
func PurgedByLedger(ctx context.Context, st *ledger.Store) (keys, photos map[string]bool, err error) {
	type row struct{ key, photo string }
	rows, err := query(ctx, st, "purges", `
SELECT old_key, photo_id FROM keymigrate.purges WHERE deleted_at IS NOT NULL
UNION ALL SELECT '', photo_id FROM keymigrate.photo_moves WHERE state = 'purged'`,
		func(r pgx.Row) (row, error) {
			var v row
			err := r.Scan(&v.key, &v.photo)
			return v, err
		})
	if err != nil {
		return nil, nil, err
	}
	keys, photos = map[string]bool{}, map[string]bool{}
	for _, v := range rows {
		if v.key != "" {
			keys[v.key] = true
		}
		photos[v.photo] = true
	}
	return keys, photos, nil
}
