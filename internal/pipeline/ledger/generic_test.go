package ledger_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// A store opened with GenericPlans prepares its statements once per
// connection and plans them once, without sequential scans (what saves the
// worker's Postgres CPU); one opened without keeps parsing and planning every
// call with its arguments (the producer and migratectl, whose range scans
// need them); and GenericPlans through PgBouncer (timeouts from the server)
// is refused, since 1.18's transaction pooling cannot keep a named statement.
func TestGenericPlansArePreparedOnceAndPlannedWithoutTheArguments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := testenv.New(t, testenv.Options{})
	id := "5e1c7a90-3b2d-4c8e-9f01-2a3b4c5d6e7f"
	env.InsertPhoto(t, id, nil, "uploaded/j41.jpg", nil, nil)

	// plans returns, for the statement that reads a photo, how often the
	// store's one connection planned it generically and with its arguments.
	plans := func(o ledger.Options) (prepared bool, generic, custom int64, seqscan string) {
		o.MaxConns = 1
		st, err := ledger.OpenWith(ctx, env.DatabaseURL, o)
		require.NoError(t, err)
		defer st.Close()
		for range 7 { // past Postgres's five custom plans before it may go generic
			_, err := st.PhotoGet(ctx, id)
			require.NoError(t, err)
		}
		err = st.Pool().QueryRow(ctx, `SELECT count(*) > 0, coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0), current_setting('enable_seqscan') || ',' || current_setting('jit')
  FROM pg_prepared_statements WHERE statement LIKE '%FROM photos WHERE id = $1%' AND statement NOT LIKE '%pg_prepared_statements%'`).Scan(&prepared, &generic, &custom, &seqscan)
		require.NoError(t, err)
		return prepared, generic, custom, seqscan
	}

	prepared, generic, custom, seqscan := plans(ledger.Options{GenericPlans: true})
	require.True(t, prepared, "the statement is prepared on the connection")
	require.EqualValues(t, 7, generic, "every call runs the one generic plan")
	require.Zero(t, custom, "no call is planned with its arguments")
	require.Equal(t, "off,off", seqscan, "generic plans are made without sequential scans, and run without JIT compilation")

	prepared, _, _, seqscan = plans(ledger.Options{})
	require.False(t, prepared, "without GenericPlans nothing stays prepared: each call is planned with its arguments")
	require.Equal(t, "on,on", seqscan)

	_, err := ledger.OpenWith(ctx, env.DatabaseURL, ledger.Options{GenericPlans: true, TimeoutsFromServer: true})
	require.ErrorContains(t, err, "turn the generic plans off")
}
