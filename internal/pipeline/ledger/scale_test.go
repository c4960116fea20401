package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The ledger's connections prepare no named statement: Postgres would give a
// named statement a generic plan after five runs and keep it for the life of
// the connection, a sequential scan if it was planned while the table was
// empty (the producer slowed from 1,700 to 260 photos/s this way), and
// PgBouncer's transaction pooling cannot carry named statements across
// transactions. A DATABASE_URL that asks for pgx's statement cache gets it.
func TestStatementsAreNotPreparedByName(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	named := func(url string) int {
		st, err := ledger.Open(ctx, url, 1) // one connection: the same session throughout
		require.NoError(t, err)
		defer st.Close()
		for range 10 {
			_, err := st.PhotoMoveStates(ctx, "", []string{"a", "b"})
			require.NoError(t, err)
		}
		var n int
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements`).Scan(&n))
		return n
	}
	require.Zero(t, named(env.DatabaseURL))
	require.Positive(t, named(env.DatabaseURL+"&default_query_exec_mode=cache_statement"), "the URL's choice wins")
}

// Behind PgBouncer the worker takes its timeouts from the server and checks
// them: a server that does not set them is refused with what to do.
func TestTimeoutsFromTheServerAreChecked(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	o := ledger.Options{MaxConns: 2, LockTimeout: 5 * time.Second, StatementTimeout: 30 * time.Second, TimeoutsFromServer: true}
	_, err := ledger.OpenWith(ctx, env.DatabaseURL, o)
	require.ErrorContains(t, err, "ALTER ROLE")

	// The same values set for the database (as ALTER ROLE or PgBouncer's
	// connect_query would): accepted, and in force.
	_, err = env.Store.Pool().Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q SET lock_timeout = '5s'`, dbName(env)))
	require.NoError(t, err)
	_, err = env.Store.Pool().Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q SET statement_timeout = '30s'`, dbName(env)))
	require.NoError(t, err)
	st, err := ledger.OpenWith(ctx, env.DatabaseURL, o)
	require.NoError(t, err)
	defer st.Close()
	var lock string
	require.NoError(t, st.Pool().QueryRow(ctx, `SHOW lock_timeout`).Scan(&lock))
	require.Equal(t, "5s", lock)
}

func dbName(env *testenv.Env) string {
	var name string
	if err := env.Store.Pool().QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
		panic(err)
	}
	return name
}

// A swap's new keys are stored only when the key layout does not derive them:
// the derivation is the worker's own, for legacy and already user-scoped keys.
func TestNewKeysAreDerivedFromTheOldKeys(t *testing.T) {
	t.Parallel()
	owner, photo := "7505073c-6cb5-4b9e-8d73-643186bdb4f8", "d72159ee-8857-4fdb-974b-9484c5cdbcd6"
	job := "ffb53424-c146-4954-a783-c4f32ad2ce3f"
	p := func(s string) *string { return &s }
	old := ledger.Keys{Original: "uploaded/" + job + ".webp", Processed: p("restored/" + job + "/1b2c.png"), Thumbnail: nil}
	want := ledger.Keys{Original: "users/" + owner + "/raw/" + photo + "/original.webp", Processed: p("users/" + owner + "/processed/" + photo + "/restored.png")}
	got, ok := ledger.DeriveNewKeys(old, owner, photo)
	require.True(t, ok)
	require.Equal(t, want, got)
	require.True(t, ledger.NewKeysDerived(old, want, owner, photo))

	// A column already user-scoped stays as it is.
	old.Thumbnail = p("users/" + owner + "/thumbs/" + photo + ".jpg")
	want.Thumbnail = old.Thumbnail
	require.True(t, ledger.NewKeysDerived(old, want, owner, photo))
	// Anything else is stored: another owner, another key, a key that does
	// not parse, a column dropped.
	require.False(t, ledger.NewKeysDerived(old, want, "11111111-2222-4333-8444-555555555555", photo))
	other := want
	other.Original = "users/" + owner + "/raw/" + photo + "/original.jpg"
	require.False(t, ledger.NewKeysDerived(old, other, owner, photo))
	dropped := want
	dropped.Processed = nil
	require.False(t, ledger.NewKeysDerived(old, dropped, owner, photo))
	bad := old
	bad.Original = "elsewhere/x.jpg"
	require.False(t, ledger.NewKeysDerived(bad, want, owner, photo))
}
