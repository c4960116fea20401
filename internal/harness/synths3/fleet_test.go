package synths3

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// The finished state must be exactly what the real fleet writes for the
// keyspace, or verify, cleanup and compact would be measured on rows they
// never meet. This test runs the real producer and workers (in-process, on
// the local SQS) against the endpoint in Legacy mode and the legacy load, and
// compares every ledger row, photos row and object with a finished load of
// the same keyspace and the endpoint in Migrated mode.
func TestTheFinishedStateIsWhatTheFleetWrites(t *testing.T) {
	t.Parallel()
	for _, idType := range []IDType{IDBigint, IDUUID} {
		t.Run(string(idType), func(t *testing.T) {
			t.Parallel()
			cfg := Config{Photos: 300, IDType: idType}
			fleet := load(t, cfg, LegacyState, LoadOptions{})
			env := testenv.New(t, testenv.Options{}) // its queues; its database and bucket stay unused
			env.Store = openLedger(t, fleet.url)
			env.Objects = objstore.New(fleet.client, fleet.bucket, objstore.Options{})
			sum := env.Migrate(t)
			require.EqualValues(t, 300, sum.Enqueued)
			moves := fleet.ks.Totals().Moves
			st := fleet.srv.Stats()
			t.Logf("the fleet's S3 requests per object moved (%d objects): %.2f (%v)", moves, float64(st.Total)/float64(moves), st.Requests)
			require.Empty(t, st.NotImplemented)

			loaded := load(t, cfg, FinishedState, LoadOptions{})
			a, b := connect(t, fleet.url), connect(t, loaded.url)
			for _, c := range []struct{ table, order, volatile string }{
				{"public.photos", "id", ""},
				{"keymigrate.photo_moves", "photo_id", "run_id worker_id"},
				{"keymigrate.object_moves", "new_key", ""},
				{"keymigrate.runs", "run_id", "run_id checkpoint"},
			} {
				requireSameRows(t, c.table, dump(t, a, c.table, c.order, c.volatile), dump(t, b, c.table, c.order, c.volatile))
			}
			// A run's checkpoint is the last photo id it enqueued, as text.
			var ca, cb string
			require.NoError(t, a.QueryRow(context.Background(), `SELECT checkpoint FROM keymigrate.runs`).Scan(&ca))
			require.NoError(t, b.QueryRow(context.Background(), `SELECT checkpoint FROM keymigrate.runs`).Scan(&cb))
			require.Equal(t, ca, cb)
			capsColumns := "s3_bucket, s3_conditional_copy, s3_conditional_delete, s3_conditional_batch_delete, s3_acls, s3_copy_keeps_headers, s3_probed_at IS NOT NULL"
			require.Equal(t, dumpQuery(t, a, "SELECT "+capsColumns+" FROM keymigrate.control"), dumpQuery(t, b, "SELECT "+capsColumns+" FROM keymigrate.control"))
			for _, table := range []string{"failures", "run_shards", "assignments", "purges", "workers", "object_audit"} {
				require.Empty(t, dump(t, a, "keymigrate."+table, "1", ""), "the fleet left %s rows", table)
				require.Empty(t, dump(t, b, "keymigrate."+table, "1", ""), "the loader wrote %s rows", table)
			}

			// Every object, legacy and user-scoped, is where the Migrated
			// mode says it is; the probe left nothing behind.
			for i := range fleet.ks.Photos() {
				ph := fleet.ks.Photo(i)
				for _, o := range ph.Objects {
					for _, key := range []string{o.LegacyKey, o.UserKey} {
						if key == "" {
							continue
						}
						fa, okA := fleet.srv.lookup(key)
						fb, okB := loaded.srv.lookup(key)
						require.Equal(t, okB, okA, key)
						if okA {
							require.Equal(t, fb.etag(), fa.etag(), key)
							require.Equal(t, fb.size(), fa.size(), key)
						}
					}
				}
			}
			require.Empty(t, fleet.srv.state.extras.keys)
		})
	}
}

// requireSameRows fails on the first row that differs, showing only it.
func requireSameRows(t testing.TB, table string, fleet, loaded [][]string) {
	t.Helper()
	for i := range min(len(fleet), len(loaded)) {
		require.Equal(t, fleet[i], loaded[i], "%s row %d: the fleet's, then the loader's", table, i)
	}
	require.Equal(t, len(fleet), len(loaded), "%s rows: the fleet's, then the loader's", table)
	require.NotEmpty(t, fleet, table)
}

// dump reads a table's rows as text, ordered; the columns named in volatile
// (space-separated) and every timestamp are reduced to whether they are set.
func dump(t testing.TB, c *pgx.Conn, table, order, volatile string) [][]string {
	t.Helper()
	schema, name, _ := strings.Cut(table, ".")
	rows, err := c.Query(context.Background(), `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, name)
	require.NoError(t, err)
	var cols []string
	for rows.Next() {
		var col, typ string
		require.NoError(t, rows.Scan(&col, &typ))
		q := pgx.Identifier{col}.Sanitize()
		if strings.HasPrefix(typ, "timestamp") || strings.Contains(" "+volatile+" ", " "+col+" ") {
			cols = append(cols, fmt.Sprintf("%s || CASE WHEN %s IS NULL THEN ' null' ELSE ' set' END", sqlString(col), q))
		} else {
			cols = append(cols, fmt.Sprintf("%s || ' ' || coalesce(%s::text, 'null')", sqlString(col), q))
		}
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, cols, table)
	return dumpQuery(t, c, fmt.Sprintf("SELECT %s FROM %s ORDER BY %s", strings.Join(cols, ", "), table, order))
}

func dumpQuery(t testing.TB, c *pgx.Conn, q string) [][]string {
	t.Helper()
	rows, err := c.Query(context.Background(), q)
	require.NoError(t, err)
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		require.NoError(t, err)
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(v)
		}
		out = append(out, row)
	}
	require.NoError(t, rows.Err())
	return out
}
