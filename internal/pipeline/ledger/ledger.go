// Package ledger is the migration's persistence: the application's photos rows
// (read, and key columns swapped by compare-and-swap) and the tool's own ledger
// in the keymigrate schema (runs, photo and object moves, failures), created by
// versioned migrations.
//
// The photos table is found through the connection's search_path, so a
// deployment whose table lives in another schema sets search_path in
// DATABASE_URL (options=-csearch_path=app).
//
// One Store serves every entity; its methods are named entity first, then
// verb (PhotoGet, PhotoMoveSwap, ObjectMoveRecordCopies), so a surface of a
// hundred methods stays searchable, and each entity has its own file:
//
//	photos.go        the application's photos rows (read; keys swapped only in photo_moves.go)
//	selection.go     which photos a run selects (owners, lists, samples), keyset scans
//	photo_moves.go   one row per photo the migration touched: attempts, swap, archive, rollback
//	object_moves.go  one row per object copied: intents, copies, commits, what cleanup deleted
//	runs.go          producer and assign runs, their checkpoints; shards.go their shards
//	failures.go      every failure and what the DLQ holds
//	control.go       the fleet's control row, worker heartbeats, S3 capabilities
//	cleanup.go       cleanup's claims and deletions; purge.go the archived purge
//	assignments.go   owners assigned to archived photos
//	audit.go         compaction into audit rows, and the run report
//	plan.go          the pre-flight plan's session tables
//	inventory.go     an S3 Inventory report loaded into Postgres, for plan, verify and cleanup
//
// No other package queries these tables: they go through a Store.
package ledger

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
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
const migrationLock = 0x6b6d6967

// "kmig"

// Store is the handle on the database.
type Store struct {
	pool *pgxpool.Pool
}

// FromPool wraps a pool the caller owns (the application's own, for
// PhotoLegacyKeysClaimed); closing the Store closes the pool.
func FromPool(p *pgxpool.Pool) *Store { return &Store{pool: p} }

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
	// TimeoutsFromServer says the server sets LockTimeout and StatementTimeout
	// (ALTER ROLE … SET, or PgBouncer's connect_query) instead of the startup
	// packet: PgBouncer refuses unknown startup parameters, and ignoring them
	// (ignore_startup_parameters) would silently drop the timeouts. Every new
	// connection then checks that the server's values are the ones asked
	// for, and refuses to connect otherwise.
	TimeoutsFromServer bool
	// GenericPlans has each statement prepared once per connection (named
	// prepared statements) and planned once, with a generic plan, instead of
	// parsed and planned on every call: the worker's choice (its statements
	// are the same few, a photo at a time). Parsing and planning were about
	// 40% of Postgres's CPU in a fleet run (docs/performance.md, "Postgres's
	// share"). A generic plan is made without the arguments and kept for the
	// life of the connection, so it is made with sequential scans turned off
	// (enable_seqscan = off): on a ledger that is still empty, as at the
	// start of every migration, the cheapest plan would otherwise read
	// whole tables and keep doing so as they grow (the producer's fall, see
	// ExecModeParam); and without JIT compilation (jit = off, see below).
	// TestEveryStatementUsesAnIndexAtScale checks every statement's generic
	// plan, on a loaded ledger and an empty one. The
	// settings go in the startup packet, so not through PgBouncer
	// (TimeoutsFromServer), whose transaction pooling also cannot keep a named
	// statement on one server connection before 1.21; OpenWith refuses the
	// two together. A DATABASE_URL that sets ExecModeParam decides instead.
	GenericPlans bool
	// Tracer, if set, sees every statement the store runs (the plan test
	// EXPLAINs each of them; an operator could log slow ones).
	Tracer pgx.QueryTracer
}

// ExecModeParam is the DATABASE_URL parameter that chooses how pgx sends
// statements. Unless the URL sets it, the store uses cache_describe: unnamed
// prepared statements, planned with their actual parameters on every call.
//
// pgx's own default (cache_statement) prepares a named statement per
// connection, and after five executions Postgres may switch it to a generic
// plan that it keeps for the life of the connection. A generic plan made while
// a ledger table was small (a sequential scan is cheapest on an empty table)
// then stays as the table grows to millions of rows: the producer's rate fell
// from 1,700 to 260 photos/s this way (docs/performance-database.md). Unnamed
// statements are also what PgBouncer's transaction pooling needs (named
// prepared statements live on one server connection).
const ExecModeParam = "default_query_exec_mode"

// OpenWith connects to the database at url.
func OpenWith(ctx context.Context, url string, o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = int32(o.MaxConns)
	}
	if o.Tracer != nil {
		cfg.ConnConfig.Tracer = o.Tracer
	}
	if o.GenericPlans && o.TimeoutsFromServer {
		return nil, errors.New("generic plans and timeouts set by the server were both asked for: generic plans need a connection " +
			"that accepts settings at startup and keeps a session's prepared statements, which PgBouncer's transaction pooling " +
			"(the reason for server-set timeouts) does not; turn the generic plans off")
	}
	switch {
	case strings.Contains(url, ExecModeParam):
	case o.GenericPlans:
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
		cfg.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
		// A plan made without sequential scans can still carry their cost
		// (a small table with no index on the column it filters by), far
		// above jit_above_cost: Postgres then JIT-compiled such statements
		// on every call, and the CPU the plans saved went to LLVM.
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	default:
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	if o.TimeoutsFromServer {
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return checkTimeouts(ctx, c, o) }
	} else {
		if o.LockTimeout > 0 {
			cfg.ConnConfig.RuntimeParams["lock_timeout"] = fmt.Sprint(o.LockTimeout.Milliseconds())
		}
		if o.StatementTimeout > 0 {
			cfg.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(o.StatementTimeout.Milliseconds())
		}
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

// checkTimeouts refuses a connection whose server-set lock_timeout or
// statement_timeout differs from what o asks for.
func checkTimeouts(ctx context.Context, c *pgx.Conn, o Options) error {
	var lock, stmt int64
	err := c.QueryRow(ctx, `SELECT (extract(epoch FROM current_setting('lock_timeout')::interval) * 1000)::bigint,
       (extract(epoch FROM current_setting('statement_timeout')::interval) * 1000)::bigint`).Scan(&lock, &stmt)
	if err != nil {
		return fmt.Errorf("read the server's lock_timeout and statement_timeout: %w", err)
	}
	if lock != o.LockTimeout.Milliseconds() || stmt != o.StatementTimeout.Milliseconds() {
		return fmt.Errorf("the server sets lock_timeout=%dms and statement_timeout=%dms, not the %dms and %dms asked for: set them for the role "+
			"(ALTER ROLE … SET lock_timeout = '%dms', statement_timeout = '%dms') or in PgBouncer's connect_query (docs/performance-database.md)",
			lock, stmt, o.LockTimeout.Milliseconds(), o.StatementTimeout.Milliseconds(), o.LockTimeout.Milliseconds(), o.StatementTimeout.Milliseconds())
	}
	return nil
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
//
// Concurrent calls are serialised by a transaction-level advisory lock held
// by a transaction that stays open while goose applies the migrations on
// other connections: a session-level lock would not be safe through
// PgBouncer's transaction pooling (the lock and its unlock could land on
// different server connections), a transaction keeps its server connection.
func (s *Store) Migrate(ctx context.Context) ([]int64, error) {
	lockTx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate ledger: %w", err)
	}
	defer lockTx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // ends the lock; nothing was written in it
	if _, err := lockTx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
		return nil, fmt.Errorf("migrate ledger: take lock: %w", err)
	}
	if _, err := s.pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+Schema); err != nil {
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
var ErrSchemaOutdated = errors.New("the ledger schema is missing or outdated")

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
