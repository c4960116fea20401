package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
)

// roles are the grant files' roles, as the files name them.
var roles = []string{"km_operator", "km_worker", "km_producer", "km_app"}

// Each component runs against a fresh database with only its role's grants:
// the operator sets the ledger up (creating the schema), the application
// owns nothing but uses its photos table, the producer enqueues, the worker
// migrates, and the operator plans, checks status and verifies, and assigns
// an ownerless photo. A grant missing from a file fails the component that
// needs it (permission denied).
func TestEachComponentRunsWithOnlyItsGrants(t *testing.T) {
	env := testenv.New(t, testenv.Options{}) // the bucket and queues; its database is not used
	ctx := context.Background()
	admin := os.Getenv(testenv.EnvDatabaseURL)
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := "_" + hex.EncodeToString(b[:])
	rename := func(sql string) string {
		for _, r := range roles {
			sql = strings.ReplaceAll(sql, r, r+suffix)
		}
		return sql
	}
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, r := range roles {
		_, err := conn.Exec(ctx, "CREATE ROLE "+r+suffix+" LOGIN")
		require.NoError(t, err)
	}
	t.Cleanup(func() { // after the database is dropped (cleanups run last first)
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		for _, r := range roles {
			_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+r+suffix)
		}
	})
	dbURL := testenv.NewDatabase(t)
	as := func(role string) string {
		u, err := url.Parse(dbURL)
		require.NoError(t, err)
		u.User = url.User(role + suffix)
		return u.String()
	}
	adminPool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer adminPool.Close()
	apply := func(file string) {
		t.Helper()
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		_, err = adminPool.Exec(ctx, rename(string(raw)))
		require.NoError(t, err, file)
	}
	// The application's table, as it exists before the migration.
	_, err = adminPool.Exec(ctx, seed.PhotosTableDDL)
	require.NoError(t, err)
	apply("application.sql")
	apply("operator.sql")

	bin := binaries(t)
	run := func(role, name string, args ...string) string {
		t.Helper()
		c := exec.Command(filepath.Join(bin, name), args...)
		c.Env = append(env.Environ(), "DATABASE_URL="+as(role))
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		require.NoError(t, c.Run(), "%s %s %v with only %s's grants\nstdout:\n%s\nstderr:\n%s", role, name, args, role, stdout.String(), stderr.String())
		return stdout.String()
	}
	run("km_operator", "migratectl", "setup", "--queue-name", env.Name, "--dlq-name", env.Name+"-dlq")
	apply("worker.sql")
	apply("producer.sql")

	// The application's rows and objects (the seed is a local-stack tool:
	// it runs as the admin); then the application reads and writes its own.
	opts := seed.Options{Photos: 12, Seed: 3, OwnerlessRate: 0.2}
	_, err = seed.Run(ctx, adminPool, env.Objects, opts)
	require.NoError(t, err)
	appPool, err := pgxpool.New(ctx, as("km_app"))
	require.NoError(t, err)
	defer appPool.Close()
	_, err = appPool.Exec(ctx, "INSERT INTO photos (id, owner_id, original_key) VALUES (gen_random_uuid(), 'u', 'users/u/raw/p/original.jpg')")
	require.NoError(t, err)
	_, err = appPool.Exec(ctx, "DELETE FROM photos WHERE owner_id = 'u'")
	require.NoError(t, err)

	require.Contains(t, run("km_producer", "producer"), "enqueued")
	run("km_worker", "worker", "--drain", "--concurrency", "2", "--wait-time", "1s")
	run("km_operator", "migratectl", "status")
	require.Contains(t, run("km_operator", "migratectl", "verify"), "verify: OK")
	run("km_operator", "migratectl", "plan", "--quiet")
	var ownerless, owner string
	for _, p := range seed.Generate(opts) {
		if p.OwnerID == nil && ownerless == "" {
			ownerless = p.ID
		} else if p.OwnerID != nil {
			owner = *p.OwnerID
		}
	}
	require.NotEmpty(t, ownerless)
	run("km_operator", "migratectl", "archived", "assign", "--photo", ownerless, "--owner", owner)
	run("km_worker", "worker", "--drain", "--concurrency", "2", "--wait-time", "1s")
	require.Contains(t, run("km_operator", "migratectl", "verify"), "verify: OK")

	// And what each must not be able to do.
	for role, stmt := range map[string]string{
		"km_worker":   "UPDATE photos SET owner_id = NULL",
		"km_producer": "UPDATE photos SET status = 'x'",
		"km_app":      "SELECT count(*) FROM keymigrate.photo_moves",
	} {
		c, err := pgx.Connect(ctx, as(role))
		require.NoError(t, err)
		_, err = c.Exec(ctx, stmt)
		require.ErrorContains(t, err, "permission denied", "%s: %s", role, stmt)
		c.Close(ctx)
	}
}

var binDir string

// binaries builds cmd/... for this test.
func binaries(t *testing.T) string {
	t.Helper()
	if binDir != "" {
		return binDir
	}
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir, "../../cmd/...").CombinedOutput()
	require.NoError(t, err, "build binaries: %s", out)
	binDir = dir
	return dir
}
