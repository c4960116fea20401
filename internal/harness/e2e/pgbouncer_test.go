package e2e_test

import (
	"context"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// EnvPgBouncerURL names PgBouncer in transaction pooling mode in front of the
// test server (deploy/local/stack.sh starts it); its database is replaced by
// each test's own.
const EnvPgBouncerURL = "KEYMIGRATE_TEST_PGBOUNCER_URL"

// viaPgBouncer returns the URL of database db through PgBouncer.
func viaPgBouncer(t *testing.T, db string) string {
	t.Helper()
	raw := os.Getenv(EnvPgBouncerURL)
	if raw == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: deploy/local/stack.sh up starts PgBouncer and env exports it", EnvPgBouncerURL)
		}
		t.Skipf("%s is not set: run `deploy/local/stack.sh up` and eval its env", EnvPgBouncerURL)
	}
	u, err := url.Parse(raw)
	require.NoError(t, err)
	u.Path = "/" + db
	return u.String()
}

func databaseOf(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	return strings.TrimPrefix(u.Path, "/")
}

// The fleet through PgBouncer 1.18 in transaction pooling mode, as Debian 12
// ships it (no prepared statements across transactions, no `options` startup
// parameter): setup, the producer and two workers connect only through it and
// migrate every photo as they do directly. The workers take their
// lock_timeout and statement_timeout from PgBouncer's connect_query and check
// them; a worker that sends them in its startup packet is refused by
// PgBouncer, and one that finds other values refuses to start.
func TestFleetThroughPgBouncerTransactionPooling(t *testing.T) {
	b := setup(t, testenv.Options{})
	bouncer := viaPgBouncer(t, databaseOf(t, b.env.DatabaseURL))
	opts := seed.Options{Photos: 120, Seed: 21}
	b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	legacyBefore := b.legacyObjects()

	through := func(name string, args ...string) string {
		c := b.cmd(name, args...)
		c.Env = append(c.Env, "DATABASE_URL="+bouncer)
		out, err := c.CombinedOutput()
		require.NoError(t, err, "%s %v through PgBouncer:\n%s", name, args, tail(string(out)))
		return string(out)
	}
	require.Contains(t, through("migratectl", "setup", "--queue-name", b.env.Name, "--dlq-name", b.env.Name+"-dlq"), "ledger: schema up to date")
	require.Contains(t, through("producer"), "enqueued 120")

	// A worker that sends its timeouts as startup parameters is refused.
	c := b.cmd("worker", "--drain", "--wait-time", "1s")
	c.Env = append(c.Env, "DATABASE_URL="+bouncer)
	out, err := c.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "unsupported startup parameter")
	// One that expects other values than the server's refuses to start.
	c = b.cmd("worker", "--drain", "--wait-time", "1s", "--db-timeouts-from-server", "--db-lock-timeout", "7s")
	c.Env = append(c.Env, "DATABASE_URL="+bouncer)
	out, err = c.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "lock_timeout=5000ms")

	var workers []*os.Process
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		w := b.cmd("worker", "--drain", "--concurrency", "16", "--db-max-conns", "3", "--db-timeouts-from-server", "--wait-time", "1s")
		w.Env = append(w.Env, "DATABASE_URL="+bouncer)
		f, err := os.CreateTemp(t.TempDir(), "worker-*.log")
		require.NoError(t, err)
		w.Stderr = f
		require.NoError(t, w.Start())
		workers = append(workers, w.Process)
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = w.Wait() }()
		t.Cleanup(func() {
			if t.Failed() {
				body, _ := os.ReadFile(f.Name())
				t.Logf("worker log:\n%s", tail(string(body)))
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		for _, p := range workers {
			_ = p.Kill()
		}
		t.Fatal("the workers did not drain the queue through PgBouncer in 3 minutes")
	}
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])

	b.requireEndState(photos, legacyBefore)
	require.Zero(t, len(ledgertest.Failures(t, b.env.Store)))
	require.Contains(t, through("migratectl", "status"), "0 rows still reference legacy keys")
	require.Contains(t, b.run("migratectl", "verify"), "verify: OK")
}

// Migrations through PgBouncer: the advisory lock that serialises concurrent
// Migrate calls is a transaction's, so it holds through transaction pooling
// (a session lock and its unlock could land on different server connections).
func TestConcurrentMigrationsThroughPgBouncer(t *testing.T) {
	testenv.Require(t)
	t.Parallel()
	ctx := context.Background()
	admin := os.Getenv(testenv.EnvDatabaseURL)
	name := "kmt_bouncer_" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	conn.Close(ctx)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	bouncer := viaPgBouncer(t, name)

	var wg sync.WaitGroup
	applied := make([][]int64, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := ledger.Open(ctx, bouncer, 3)
			if err != nil {
				errs[i] = err
				return
			}
			defer st.Close()
			applied[i], errs[i] = st.Migrate(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range 4 {
		require.NoError(t, errs[i])
		total += len(applied[i])
	}
	st, err := ledger.Open(ctx, bouncer, 2)
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.CheckSchema(ctx))
	versions := ledgertest.Rows(t, st, ledgertest.TallySchemaVersions)
	require.Equal(t, versions, total, "each migration applied once, by one of the four")
}
