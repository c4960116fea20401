package ledger_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// trips counts what a store sends: each statement sent alone and each batch
// is one round trip to Postgres.
type trips struct {
	mu      sync.Mutex
	alone   []string
	batches [][]string
}

func (c *trips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.alone = append(c.alone, d.SQL)
	return ctx
}

func (c *trips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *trips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches = append(c.batches, nil)
	return ctx
}

func (c *trips) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches[len(c.batches)-1] = append(c.batches[len(c.batches)-1], d.SQL)
}

func (c *trips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// take returns the round trips since the last take: statements sent alone,
// and batches by their number of statements.
func (c *trips) take() (alone []string, batches []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.batches {
		batches = append(batches, len(b))
	}
	alone = c.alone
	c.alone, c.batches = nil, nil
	return alone, batches
}

// A swap is one transaction in two round trips (BEGIN, the row's update and
// the locks; then the records and COMMIT) where it was seven, and it stays
// all or nothing: a record that fails in the second round trip leaves the
// row as it was and the ledger unchanged, and the store's connection usable.
// A commit of derived moves is two round trips too.
func TestASwapIsOneTransactionInTwoRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := testenv.New(t, testenv.Options{})
	tr := &trips{}
	for _, generic := range []bool{false, true} {
		st, err := ledger.OpenWith(ctx, env.DatabaseURL, ledger.Options{MaxConns: 1, Tracer: tr, GenericPlans: generic})
		require.NoError(t, err)
		defer st.Close()
		id, owner := "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "2d3e4f5a-6b7c-4d8e-9fa0-1b2c3d4e5f6a"
		if generic {
			id = "9c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
		}
		env.InsertPhoto(t, id, &owner, "uploaded/"+id+".jpg", nil, testenv.Ptr("thumbnails/"+id+".jpg"))
		_, err = st.PhotoMoveBeginAttempt(ctx, id, "r", "w")
		require.NoError(t, err)
		newOriginal := "users/" + owner + "/raw/" + id + "/original.jpg"
		in := ledger.SwapInput{
			PhotoID: id, RunID: "r", OwnerID: owner, JobID: id,
			Old: ledger.Keys{Original: "uploaded/" + id + ".jpg", Thumbnail: testenv.Ptr("thumbnails/" + id + ".jpg")},
			New: ledger.Keys{Original: newOriginal, Thumbnail: testenv.Ptr("users/" + owner + "/thumbs/" + id + ".jpg")},
			Objects: []ledger.ObjectMove{
				{Kind: "original", OldKey: "uploaded/" + id + ".jpg", NewKey: newOriginal, Size: 3},
				{Kind: "thumbnail", OldKey: "thumbnails/" + id + ".jpg", NewKey: "users/" + owner + "/thumbs/" + id + ".jpg", Size: 2},
			},
		}
		tr.take()

		// A record that fails in the second round trip: nothing is written.
		_, err = env.Store.Pool().Exec(ctx, `
CREATE OR REPLACE FUNCTION public.refuse_thumbnail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
CREATE TRIGGER refuse_thumbnail BEFORE INSERT ON keymigrate.object_moves
  FOR EACH ROW WHEN (NEW.kind = 'thumbnail') EXECUTE FUNCTION public.refuse_thumbnail()`)
		require.NoError(t, err)
		_, err = st.PhotoMoveSwap(ctx, in)
		require.ErrorContains(t, err, "refused by the test")
		alone, batches := tr.take()
		// (pgx traces a batch's statements as their results are read, so the
		// COMMIT that Postgres skipped after the failure is not counted.)
		require.Len(t, batches, 2, "BEGIN, the update and two locks; the two records and COMMIT")
		require.Equal(t, 4, batches[0])
		require.Equal(t, []string{"ROLLBACK"}, alone)
		require.Equal(t, "uploaded/"+id+".jpg", env.Photo(t, id).Original, "the row's update is rolled back with the failed record")
		l, _, err := st.PhotoMoveGet(ctx, id)
		require.NoError(t, err)
		require.Equal(t, ledger.State("in_progress"), l.State, "the photo's record is rolled back too")
		var moves int
		require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.object_moves WHERE photo_id = $1`, id).Scan(&moves))
		require.Zero(t, moves, "no move is recorded")
		_, err = env.Store.Pool().Exec(ctx, `DROP TRIGGER refuse_thumbnail ON keymigrate.object_moves`)
		require.NoError(t, err)

		// The same swap, on the same (only) connection: two round trips.
		tr.take()
		out, err := st.PhotoMoveSwap(ctx, in)
		alone, batches = tr.take()
		require.NoError(t, err)
		require.Equal(t, ledger.Swapped, out)
		require.Equal(t, []int{4, 3}, batches, "BEGIN, the update and two locks; the two records and COMMIT")
		require.Empty(t, alone, "nothing sent alone")
		require.Equal(t, newOriginal, env.Photo(t, id).Original)
		l, _, err = st.PhotoMoveGet(ctx, id)
		require.NoError(t, err)
		require.Equal(t, ledger.State("migrated"), l.State)
		require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.object_moves WHERE photo_id = $1 AND committed_at IS NOT NULL`, id).Scan(&moves))
		require.Equal(t, 2, moves)

		// Planned from a row that changed: one round trip and a rollback.
		tr.take()
		out, err = st.PhotoMoveSwap(ctx, in)
		alone, batches = tr.take()
		require.NoError(t, err)
		require.Equal(t, ledger.RowChanged, out)
		require.Equal(t, []int{4}, batches)
		require.Equal(t, []string{"ROLLBACK"}, alone)

		// Derived moves of a user-scoped row: two round trips.
		meta := ledger.ObjectMove{Kind: "metadata", OldKey: "meta/" + id + ".json", NewKey: "users/" + owner + "/meta/" + id + ".json", Size: 1}
		out, err = st.PhotoMoveCommitDerived(ctx, id, "r", owner, id, []ledger.ObjectMove{meta})
		alone, batches = tr.take()
		require.NoError(t, err)
		require.Equal(t, ledger.Swapped, out)
		require.Equal(t, []int{3, 3}, batches, "BEGIN and two locks; the photo's record, the move and COMMIT")
		require.Empty(t, alone)
	}
}
