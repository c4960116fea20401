package ledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// countByScan is what the counters must equal: the ledger's rows, counted.
func countByScan(t *testing.T, pool *pgxpool.Pool, runID string) (map[ledger.State]int64, int64) {
	t.Helper()
	states := map[ledger.State]int64{}
	for _, st := range ledger.States() {
		states[st] = 0
	}
	rows, err := pool.Query(context.Background(), `SELECT state, count(*) FROM keymigrate.photo_moves WHERE $1 = '' OR run_id = $1 GROUP BY state`, runID)
	require.NoError(t, err)
	for rows.Next() {
		var st ledger.State
		var n int64
		require.NoError(t, rows.Scan(&st, &n))
		states[st] = n
	}
	require.NoError(t, rows.Err())
	var notCarried int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM keymigrate.object_moves WHERE committed_at IS NOT NULL AND not_carried IS NOT NULL`).Scan(&notCarried))
	return states, notCarried
}

func requireCountersMatch(t *testing.T, st *ledger.Store, runs ...string) {
	t.Helper()
	for _, run := range append([]string{""}, runs...) {
		want, wantNC := countByScan(t, st.Pool(), run)
		got, err := st.CounterRead(context.Background(), run, time.Minute, 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, want, got.States, "counters of run %q", run)
		require.Equal(t, wantNC, got.NotCarried)
		var rows int64
		for _, n := range want {
			rows += n
		}
		require.Equal(t, rows, got.Rows)
	}
}

// The counters equal a count of the rows after every kind of statement the
// ledger's writers issue (inserts of many rows, updates that change the state,
// the run, the holder or nothing, deletes, truncation), folded or not.
func TestCountersEqualTheLedgersRows(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	pool := env.Store.Pool()
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	exec(`INSERT INTO keymigrate.photo_moves (photo_id, run_id, state) SELECT 'p' || i, 'r' || (i % 3), 'enqueued' FROM generate_series(1, 300) i`)
	requireCountersMatch(t, env.Store, "r0", "r1")
	exec(`UPDATE keymigrate.photo_moves SET state = 'in_progress', worker_id = 'w' || (substr(photo_id, 2)::int % 4) WHERE substr(photo_id, 2)::int % 2 = 0`)
	exec(`UPDATE keymigrate.photo_moves SET attempts = attempts + 1`) // changes nothing counted
	requireCountersMatch(t, env.Store, "r0", "r1", "r2")
	_, err := env.Store.CounterFold(ctx)
	require.NoError(t, err)
	requireCountersMatch(t, env.Store, "r0", "r1", "r2")
	exec(`UPDATE keymigrate.photo_moves SET worker_id = 'w9' WHERE state = 'in_progress' AND substr(photo_id, 2)::int % 3 = 0`) // another holder
	exec(`UPDATE keymigrate.photo_moves SET state = 'migrated', swapped_at = now() WHERE substr(photo_id, 2)::int % 5 = 0`)
	exec(`UPDATE keymigrate.photo_moves SET run_id = 'r9' WHERE substr(photo_id, 2)::int % 7 = 0`) // re-enqueued by a later run
	exec(`UPDATE keymigrate.photo_moves SET state = 'failed' WHERE photo_id IN ('p1', 'p3')`)
	exec(`DELETE FROM keymigrate.photo_moves WHERE photo_id IN ('p11', 'p12', 'p13')`)
	exec(`INSERT INTO keymigrate.object_moves (new_key, photo_id, kind, old_key, size, committed_at, not_carried) VALUES
	      ('users/1/a', 'p5', 'original', 'uploaded/a.jpg', 1, now(), 'retention'),
	      ('users/1/b', 'p5', 'thumbnail', 'thumbnails/a.jpg', 1, NULL, 'legal hold')`)
	exec(`UPDATE keymigrate.object_moves SET committed_at = now() WHERE new_key = 'users/1/b'`)
	requireCountersMatch(t, env.Store, "r0", "r9")
	_, err = env.Store.CounterFold(ctx)
	require.NoError(t, err)
	requireCountersMatch(t, env.Store, "r0", "r9")
	c, err := env.Store.CounterRead(ctx, "", time.Minute, 10*time.Second)
	require.NoError(t, err)
	require.EqualValues(t, 60, c.Finished, "the photos migrated in the last minute (every fifth)")
	require.NotNil(t, c.LastProgress)
	exec(`TRUNCATE keymigrate.photo_moves`)
	requireCountersMatch(t, env.Store)
}

// Concurrent writers and folds: nothing is counted twice or lost.
func TestCountersHoldUnderConcurrentWritesAndFolds(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	pool := env.Store.Pool()
	_, err := pool.Exec(ctx, `INSERT INTO keymigrate.photo_moves (photo_id, run_id, state) SELECT 'p' || i, 'r', 'enqueued' FROM generate_series(1, 400) i`)
	require.NoError(t, err)
	states := []ledger.State{ledger.StateInProgress, ledger.StateMigrated, ledger.StateFailed, ledger.StateEnqueued, ledger.StateRolledBack}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range 60 {
				st := states[r.IntN(len(states))]
				lo := r.IntN(400)
				// The rows are locked in photo id order first: two range
				// updates that each lock in heap order can deadlock each
				// other (CI saw it), and the writers' own deadlock is not
				// what this test is about.
				_, err := pool.Exec(ctx, `WITH l AS (SELECT photo_id FROM keymigrate.photo_moves
  WHERE substr(photo_id, 2)::int BETWEEN $3 AND $3 + 9 ORDER BY photo_id FOR UPDATE)
UPDATE keymigrate.photo_moves p SET state = $1, worker_id = $2 FROM l WHERE p.photo_id = l.photo_id`, st, fmt.Sprintf("w%d", w), lo)
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 30 {
				if _, err := env.Store.CounterFold(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	requireCountersMatch(t, env.Store, "r")
	_, err = env.Store.CounterFold(ctx)
	require.NoError(t, err)
	requireCountersMatch(t, env.Store, "r")
}

// The partial index status counts stuck photos with names the same bound as
// the sweeper.
func TestTheStuckIndexUsesMaxRescues(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	var def string
	require.NoError(t, env.Store.Pool().QueryRow(context.Background(),
		`SELECT indexdef FROM pg_indexes WHERE schemaname = 'keymigrate' AND indexname = 'photo_moves_stuck_idx'`).Scan(&def))
	require.Contains(t, def, fmt.Sprintf("rescued >= %d", ledger.MaxRescues))
}

// A census counts the legacy rows the ledger has not recorded; pending then
// falls by every photo the ledger records.
func TestCensusCountsPendingPhotos(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		ids = append(ids, uuid.NewString())
		env.InsertPhoto(t, ids[i], testenv.Ptr("7"), fmt.Sprintf("uploaded/j%d.jpg", i), nil, nil)
	}
	_, ok, err := env.Store.CensusGet(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	c, err := env.Store.CensusTake(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 5, c.Pending)
	_, err = env.Store.Pool().Exec(ctx, `INSERT INTO keymigrate.photo_moves (photo_id, run_id, state) VALUES ($1, 'r', 'enqueued'), ($2, 'r', 'enqueued')`, ids[0], ids[1])
	require.NoError(t, err)
	counts, err := env.Store.CounterRead(ctx, "", time.Minute, time.Second)
	require.NoError(t, err)
	got, ok, err := env.Store.CensusGet(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 3, got.PendingNow(counts.Rows))
	require.NoError(t, env.Store.CensusRecordRunEnd(ctx, "r"))
	got, _, err = env.Store.CensusGet(ctx)
	require.NoError(t, err)
	require.Zero(t, got.PendingNow(counts.Rows))
	require.Equal(t, "producer run r", got.Source)
}
