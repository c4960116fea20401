package e2e_test

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
)

// A worker's Postgres connections are --db-max-conns, whatever its
// --concurrency: three workers moving 64 photos each at once hold at most
// 3 × 3 server connections (deploy/local/fleet-connections.sh measures 8 ×
// 128 the same way).
func TestWorkerConnectionsDoNotGrowWithConcurrency(t *testing.T) {
	b := setup(t, testenv.Options{})
	opts := seed.Options{Photos: 150, Seed: 23}
	b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	legacyBefore := b.legacyObjects()
	b.run("producer")

	app := "kmconn-" + b.env.Name
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		w := b.cmd("worker", "--drain", "--concurrency", "64", "--db-max-conns", "3", "--wait-time", "1s")
		w.Env = append(w.Env, "DATABASE_URL="+withParam(t, b.env.DatabaseURL, "application_name", app))
		require.NoError(t, w.Start())
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = w.Wait() }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	peak := 0
	deadline := time.After(3 * time.Minute)
sample:
	for {
		select {
		case <-done:
			break sample
		case <-deadline:
			t.Fatal("the workers did not drain the queue in 3 minutes")
		case <-time.After(50 * time.Millisecond):
		}
		var n int
		require.NoError(t, b.env.Store.Pool().QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, app).Scan(&n))
		peak = max(peak, n)
	}
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, peak)
	require.LessOrEqual(t, peak, 9, "3 workers × --db-max-conns 3")
	b.requireEndState(photos, legacyBefore)
}

// withParam adds a query parameter to a database URL.
func withParam(t *testing.T, dsn, key, value string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}
