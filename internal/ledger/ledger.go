// Package ledger is the migration's persistence: the application's photos rows
// (read, and key columns swapped by compare-and-swap) and the tool's own ledger
// in the keymigrate schema (runs, photo and object moves, failures), created by
// versioned migrations.
//
// The photos table is found through the connection's search_path, so a
// deployment whose table lives in another schema sets search_path in
// DATABASE_URL (options=-csearch_path=app).
package ledger

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// Schema is the Postgres schema holding the ledger.
const Schema = "keymigrate"

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLock is the advisory lock key that serialises concurrent Migrate
// calls (several workers starting at once).
const migrationLock = 0x6b6d6967 // "kmig"

// Store is the handle on the database.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url with at most maxConns connections.
func Open(ctx context.Context, url string, maxConns int) (*Store, error) {
	return OpenWith(ctx, url, Options{MaxConns: maxConns})
}

// Options tune the connections.
type Options struct {
	MaxConns int
	// LockTimeout and StatementTimeout are set on every session (0: the
	// server's default). A worker must not wait forever on a row the
	// application keeps locked, nor on a database that stopped answering: the
	// statement fails, the photo is retried later.
	LockTimeout      time.Duration
	StatementTimeout time.Duration
}

// OpenWith connects to the database at url.
func OpenWith(ctx context.Context, url string, o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = int32(o.MaxConns)
	}
	if o.LockTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["lock_timeout"] = fmt.Sprint(o.LockTimeout.Milliseconds())
	}
	if o.StatementTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(o.StatementTimeout.Milliseconds())
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return &Store{pool: pool}, nil
}

// Pool exposes the connection pool to callers that run their own queries
// (tests, the seeder).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close releases the connections.
func (s *Store) Close() { s.pool.Close() }

func (s *Store) provider() (*goose.Provider, func() error, error) {
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return nil, nil, err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithTableName(Schema+".schema_version"),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("load ledger migrations: %w", err)
	}
	return p, db.Close, nil
}

// Migrate creates or upgrades the ledger schema. It is idempotent and safe to
// run from several processes at once. It returns the versions it applied.
func (s *Store) Migrate(ctx context.Context) ([]int64, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate ledger: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return nil, fmt.Errorf("migrate ledger: take lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock) //nolint:errcheck // the lock also ends with the session

	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+Schema); err != nil {
		return nil, fmt.Errorf("migrate ledger: create schema %s: %w", Schema, err)
	}
	p, closeDB, err := s.provider()
	if err != nil {
		return nil, err
	}
	defer closeDB()
	res, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate ledger: %w", err)
	}
	var applied []int64
	for _, r := range res {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// ErrSchemaOutdated is returned by CheckSchema when migrations are pending.
var ErrSchemaOutdated = errors.New("the ledger schema is missing or outdated: run `migratectl setup` (or `migratectl setup --only ledger`) first")

// CheckSchema verifies that the ledger is at the version this binary expects,
// so that a producer or worker never writes to a half-created ledger.
func (s *Store) CheckSchema(ctx context.Context) error {
	var exists bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema=$1 AND table_name='schema_version')`, Schema).Scan(&exists)
	if err != nil {
		return fmt.Errorf("check ledger schema: %w", err)
	}
	if !exists {
		return ErrSchemaOutdated
	}
	p, closeDB, err := s.provider()
	if err != nil {
		return err
	}
	defer closeDB()
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("check ledger schema: %w", err)
	}
	if pending {
		return ErrSchemaOutdated
	}
	return nil
}

// inTx runs fn in a transaction, committing if it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}
