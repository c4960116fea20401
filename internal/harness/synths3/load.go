package synths3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// State is what the loader writes.
type State int

// The states.
const (
	// LegacyState: the photos rows point at the legacy keys; the ledger is
	// migrated and empty. The endpoint's Legacy mode matches it.
	LegacyState State = iota
	// FinishedState: what the fleet leaves behind when every photo was
	// migrated: rows swapped to the user-scoped keys (ownerless rows
	// archived), the producer's finished run, one photo_moves row per photo
	// and one committed, verified object_moves row per object moved, and the
	// S3 capabilities the fleet's first worker recorded. The endpoint's
	// Migrated mode matches it.
	FinishedState
)

// String names the state, for errors and logs.
func (s State) String() string {
	if s == FinishedState {
		return "finished"
	}
	return "legacy"
}

// LoadOptions shape a load.
type LoadOptions struct {
	State State
	// Schema holds the photos table (default public; the ledger is always
	// in its own keymigrate schema). A schema other than public needs
	// search_path in the commands' DATABASE_URL (see ledger's package doc).
	Schema string
	// Bucket is the bucket the S3 capability record names (FinishedState;
	// default the endpoint's default, "synthetic").
	Bucket string
	// RunID names the producer run (default "run-synthetic").
	RunID string
	// RunStart is when the run began (default 30 days ago, so that any
	// cleanup grace up to then has passed). Photo i was enqueued at
	// RunStart + 1s + i ms and swapped about 0.2 s after.
	RunStart time.Time
	// Chunk is the photos per statement (default 100,000); Concurrency the
	// statements in flight (default 2).
	Chunk       int64
	Concurrency int
	// Progress, if set, is called after each chunk with the photos loaded.
	Progress func(photos int64)
}

// LoadResult says what was written and how long each step took.
type LoadResult struct {
	Photos, Ownerless, ObjectMoves int64
	// Seconds per step: "migrate", "drop_indexes", "photos", "photo_moves",
	// "object_moves", "indexes", "analyze", … The chunked steps add up the
	// time of statements that ran at once (Concurrency); "total" is the
	// wall-clock time of the whole load.
	Seconds map[string]float64
}

// Load creates the application's photos table for the keyspace's id type in
// an empty database (the one databaseURL names; tests make one each with
// testenv.NewDatabase), applies the ledger's migrations with the ledger's own
// Migrate, and fills both in the chosen state with generate_series: the rows
// are computed in Postgres (sql.go), none pass through this process. The
// indexes of the tables it fills are dropped first and rebuilt after (from
// their own definitions), then everything is analysed. A load that fails
// leaves the database half-filled: drop it.
func Load(ctx context.Context, databaseURL string, ks *Keyspace, o LoadOptions) (LoadResult, error) {
	start := time.Now()
	o = o.withDefaults()
	res := LoadResult{Seconds: map[string]float64{}}
	var mu sync.Mutex
	step := func(name string, fn func() error) error {
		t := time.Now()
		err := fn()
		mu.Lock()
		res.Seconds[name] += time.Since(t).Seconds()
		mu.Unlock()
		if err != nil {
			return fmt.Errorf("load the %s state: %s: %w", o.State, name, err)
		}
		return nil
	}
	if err := step("migrate", func() error { return migrateLedger(ctx, databaseURL) }); err != nil {
		return res, err
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return res, fmt.Errorf("load: parse database URL: %w", err)
	}
	cfg.MaxConns = int32(o.Concurrency)
	// Rows lost to a crash are reloaded anyway; index builds get memory.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	cfg.ConnConfig.RuntimeParams["maintenance_work_mem"] = "512MB"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("load: connect: %w", err)
	}
	defer pool.Close()
	l := &loader{pool: pool, ks: ks, o: o, photos: pgx.Identifier{o.Schema, "photos"}.Sanitize()}

	if err := step("photos_table", l.createPhotosTable); err != nil {
		return res, err
	}
	tables := []string{l.photos}
	if o.State == FinishedState {
		tables = append(tables, "keymigrate.photo_moves", "keymigrate.object_moves")
		if err := step("check_empty", l.checkLedgerEmpty); err != nil {
			return res, err
		}
	}
	var idx []dbIndex
	if err := step("drop_indexes", func() error { idx, err = l.dropIndexes(ctx, tables); return err }); err != nil {
		return res, err
	}
	var done atomic.Int64
	err = l.chunks(ctx, func(lo, hi int64) error {
		if err := step("photos", func() error { return l.insertPhotos(ctx, lo, hi) }); err != nil {
			return err
		}
		if o.State == FinishedState {
			if err := step("photo_moves", func() error { return l.insertPhotoMoves(ctx, lo, hi) }); err != nil {
				return err
			}
			if err := step("object_moves", func() error { return l.insertObjectMoves(ctx, lo, hi) }); err != nil {
				return err
			}
		}
		if o.Progress != nil {
			o.Progress(done.Add(hi - lo))
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if err := step("indexes", func() error { return l.createIndexes(ctx, idx) }); err != nil {
		return res, err
	}
	if o.State == FinishedState {
		if err := step("run_and_control", func() error { return l.writeRunAndControl(ctx) }); err != nil {
			return res, err
		}
	}
	if err := step("analyze", func() error { return l.analyze(ctx, tables) }); err != nil {
		return res, err
	}
	if err := step("count", func() error { return l.count(ctx, &res) }); err != nil {
		return res, err
	}
	res.Seconds["total"] = time.Since(start).Seconds()
	return res, nil
}

func (o LoadOptions) withDefaults() LoadOptions {
	if o.Schema == "" {
		o.Schema = "public"
	}
	if o.Bucket == "" {
		o.Bucket = "synthetic"
	}
	if o.RunID == "" {
		o.RunID = DefaultRunID
	}
	if o.RunStart.IsZero() {
		o.RunStart = time.Now().UTC().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	}
	if o.Chunk <= 0 {
		o.Chunk = 100_000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	return o
}

// migrateLedger applies the ledger's migrations with its own Migrate.
func migrateLedger(ctx context.Context, databaseURL string) error {
	st, err := ledger.Open(ctx, databaseURL, 2)
	if err != nil {
		return err
	}
	defer st.Close()
	_, err = st.Migrate(ctx)
	return err
}

type loader struct {
	pool   *pgxpool.Pool
	ks     *Keyspace
	o      LoadOptions
	photos string // the table's qualified, quoted name
}

// createPhotosTable creates the application's photos table as the tests
// create it (internal/ops/seed, producer/shard_test.go), with ids and owners
// of the keyspace's id type. It must not exist yet.
func (l *loader) createPhotosTable() error {
	ctx := context.Background()
	typ := "bigint"
	if l.ks.cfg.IDType == IDUUID {
		typ = "uuid"
	}
	_, err := l.pool.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS %s;
CREATE TABLE %s (
    id            %s PRIMARY KEY,
    owner_id      %s,
    original_key  text NOT NULL,
    processed_key text,
    thumbnail_key text,
    status        text NOT NULL DEFAULT 'ready',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
)`, pgx.Identifier{l.o.Schema}.Sanitize(), l.photos, typ, typ))
	return err
}

func (l *loader) checkLedgerEmpty() error {
	var any bool
	err := l.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM keymigrate.photo_moves) OR EXISTS (SELECT 1 FROM keymigrate.object_moves) OR EXISTS (SELECT 1 FROM keymigrate.runs)`).Scan(&any)
	if err == nil && any {
		err = errors.New("the ledger already holds rows: load into an empty database")
	}
	return err
}

// chunks calls fn for [lo, hi) ranges of photos, Concurrency at a time.
func (l *loader) chunks(ctx context.Context, fn func(lo, hi int64) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.o.Concurrency)
	for lo := int64(0); lo < l.ks.Photos(); lo += l.o.Chunk {
		hi := min(lo+l.o.Chunk, l.ks.Photos())
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(lo, hi) })
	}
	return g.Wait()
}

// insertPhotos writes the photos rows of [lo, hi): legacy keys in the
// legacy state; in the finished state the user-scoped keys the swap wrote,
// or, for ownerless photos, the legacy keys and status archived.
func (l *loader) insertPhotos(ctx context.Context, lo, hi int64) error {
	keys := "p.orig, p.proc, p.thumb, 'ready'"
	if l.o.State == FinishedState {
		keys = `CASE WHEN p.ownerless THEN p.orig ELSE p.uorig END, CASE WHEN p.ownerless THEN p.proc ELSE p.uproc END,
       CASE WHEN p.ownerless THEN p.thumb ELSE p.uthumb END, CASE WHEN p.ownerless THEN 'archived' ELSE 'ready' END`
	}
	_, err := l.pool.Exec(ctx, fmt.Sprintf(`
INSERT INTO %s (id, owner_id, original_key, processed_key, thumbnail_key, status, created_at, updated_at)
SELECT p.pid_t, p.oid_t, %s, p.created, p.created FROM (%s) p`, l.photos, keys, l.ks.sqlPhotos()), lo, hi)
	return err
}

// The times of photo i's migration, as offsets from RunStart (sqlTimes).
const (
	enqueueOffset = "INTERVAL '1 second' + p.i * INTERVAL '1 millisecond'"
	startDelay    = "INTERVAL '20 milliseconds'"
	copyDelay     = "INTERVAL '80 milliseconds'"
	// The swap comes 150 to 249 ms after the start (photo hash byte 14).
	swapDelay = "INTERVAL '150 milliseconds' + get_byte(p.h, 14) % 100 * INTERVAL '1 millisecond'"
)

// DefaultRunID is the producer run a load attributes its photos to when
// LoadOptions.RunID is empty.
const DefaultRunID = "run-synthetic"

// insertPhotoMoves writes what the producer, BeginAttempt and Swap (or
// Archive, for ownerless photos) leave in photo_moves: see ledger's
// RecordEnqueued, BeginAttempt, Swap and Archive.
func (l *loader) insertPhotoMoves(ctx context.Context, lo, hi int64) error {
	_, err := l.pool.Exec(ctx, fmt.Sprintf(`
INSERT INTO keymigrate.photo_moves (photo_id, run_id, state, owner_id, job_id, attempts,
       old_original_key, old_processed_key, old_thumbnail_key, old_status, new_derived,
       enqueued_at, started_at, swapped_at, archived_at, worker_id, updated_at)
SELECT p.pid, $3, CASE WHEN p.ownerless THEN 'archived' ELSE 'migrated' END, p.oid,
       CASE WHEN NOT p.ownerless THEN p.job END, 1,
       p.orig, p.proc, p.thumb, CASE WHEN p.ownerless THEN 'ready' END, NOT p.ownerless,
       t.enqueued, t.started, CASE WHEN NOT p.ownerless THEN t.swapped END, CASE WHEN p.ownerless THEN t.started + %[2]s END,
       -- Archive does not clear the worker BeginAttempt set; Swap does.
       CASE WHEN p.ownerless THEN $4 END,
       CASE WHEN p.ownerless THEN t.started + %[2]s ELSE t.swapped END
  FROM (%[1]s) p
 CROSS JOIN LATERAL (SELECT $5::timestamptz + %[3]s AS enqueued, $5::timestamptz + %[3]s + %[2]s AS started,
                            $5::timestamptz + %[3]s + %[2]s + %[4]s AS swapped) t`,
		l.ks.sqlPhotos(), startDelay, enqueueOffset, swapDelay), lo, hi, l.o.RunID, syntheticWorker, l.o.RunStart)
	return err
}

// syntheticWorker is the worker id recorded on archived photos (a real
// worker's is host-pid-random).
const syntheticWorker = "synthetic-1-000000"

// insertObjectMoves writes what RecordIntents, RecordCopies and the swap's
// commitObjects leave in object_moves for every object a photo with an owner
// moves, as a worker records it on a server with the endpoint's
// Capabilities: the copy verified from its own response by ETag (the legacy
// objects carry no checksum), the copy's CRC64NVME recorded, and the
// source's own full-object algorithm recorded as none (”: it differs from
// the copy's, so the worker writes it).
func (l *loader) insertObjectMoves(ctx context.Context, lo, hi int64) error {
	_, err := l.pool.Exec(ctx, fmt.Sprintf(`
INSERT INTO keymigrate.object_moves (new_key, photo_id, kind, old_key, size, source_etag, etag,
       checksum_algorithm, checksum, verify_method, content_type, job_id, copied_at, verified_at, committed_at,
       source_checksum_algorithm)
SELECT o.new_key, o.pid, o.kind, o.old_key, o.size, o.etag, o.etag,
       'CRC64NVME', o.checksum, %[6]s, o.content_type, o.job,
       t.started + %[2]s, t.swapped, t.swapped, ''
  FROM (%[1]s) o
 CROSS JOIN LATERAL (SELECT $3::timestamptz + %[3]s + %[4]s AS started,
                            $3::timestamptz + %[3]s + %[4]s + %[5]s AS swapped) t`,
		l.ks.sqlObjects(), copyDelay, strings.ReplaceAll(enqueueOffset, "p.", "o."), startDelay, strings.ReplaceAll(swapDelay, "p.", "o."), verifyMethodSQL()),
		lo, hi, l.o.RunStart)
	return err
}

// verifyMethodSQL is what a worker records as how it verified a copy, given
// the endpoint's Capabilities (worker's verifyCopy; objstore.Compare decides
// by ETag, the sources carrying no checksum), as an SQL expression over an
// object row. Where a copy keeps every header and the bucket has no ACLs the
// default fleet copies first (worker --copy-first) and proves each copy by
// its source's read after it; the metadata's copy is pinned to the HEAD that
// found it and verified from its response. A photo whose original is not in
// STANDARD (attrs.infrequent: per100(PhotoHash(i)[14]) < InfrequentPer100)
// has its unread copy refused: the photo is planned again with every source
// read first; the original is copied again into its class (verified from the
// response), the photo's other copies are found intact and verified by a
// read of each ("etag").
func verifyMethodSQL() string {
	c := Capabilities()
	if !c.CopyKeepsHeaders {
		return "'etag'"
	}
	if c.ACLs {
		return "'etag (copy response)'"
	}
	return fmt.Sprintf(`CASE WHEN get_byte(decode(md5('km:' || o.n), 'hex'), 14) * 100 / 256 < %d
            THEN CASE WHEN o.slot = %d THEN 'etag (copy response)' ELSE 'etag' END
       WHEN o.kind = %s THEN 'etag (copy response)'
       ELSE 'etag (copy response, source read after the copy)' END`,
		InfrequentPer100, SlotOriginal, sqlString(string(keylayout.KindMetadata)))
}

// writeRunAndControl records the producer's finished run and the S3
// capabilities the fleet's first worker probed.
func (l *loader) writeRunAndControl(ctx context.Context) error {
	n := l.ks.Photos()
	var ownerless int64
	if err := l.pool.QueryRow(ctx, `SELECT count(*) FROM keymigrate.photo_moves WHERE state = 'archived'`).Scan(&ownerless); err != nil {
		return err
	}
	finished := l.o.RunStart.Add(time.Second + time.Duration(n)*time.Millisecond)
	c := Capabilities()
	_, err := l.pool.Exec(ctx, `
INSERT INTO keymigrate.runs (run_id, started_at, updated_at, finished_at, checkpoint, found, enqueued, skipped, ownerless, kind, shards)
VALUES ($1, $2, $3, $3, $4, $5, $5, 0, $6, 'producer', 0);
`, l.o.RunID, l.o.RunStart, finished, l.ks.PhotoID(n-1), n, ownerless)
	if err != nil {
		return err
	}
	_, err = l.pool.Exec(ctx, `UPDATE keymigrate.control SET s3_bucket = $1, s3_conditional_copy = $2, s3_conditional_delete = $3,
       s3_conditional_batch_delete = $4, s3_acls = $5, s3_copy_keeps_headers = $6, s3_probed_at = $7 WHERE id = 1`,
		l.o.Bucket, c.ConditionalCopy, c.ConditionalDelete, c.ConditionalBatchDelete, c.ACLs, c.CopyKeepsHeaders, l.o.RunStart)
	return err
}

// dbIndex is one index or primary key dropped for the load.
type dbIndex struct {
	table, name, def string
	constraint       bool
}

// dropIndexes drops every index of tables (primary keys included),
// returning their definitions: building an index once over a full table is
// several times faster than maintaining it row by row.
func (l *loader) dropIndexes(ctx context.Context, tables []string) ([]dbIndex, error) {
	var out []dbIndex
	for _, t := range tables {
		rows, err := l.pool.Query(ctx, `
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname IS NOT NULL, coalesce(c.conname, ''), coalesce(pg_get_constraintdef(c.oid), '')
  FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype IN ('p', 'u')
 WHERE i.indrelid = $1::regclass`, t)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var name, def, con, conDef string
			var isCon bool
			if err := rows.Scan(&name, &def, &isCon, &con, &conDef); err != nil {
				rows.Close()
				return nil, err
			}
			if isCon {
				out = append(out, dbIndex{table: t, name: con, def: conDef, constraint: true})
			} else {
				out = append(out, dbIndex{table: t, name: name, def: def})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	for _, x := range out {
		stmt := "DROP INDEX " + x.name
		if x.constraint {
			stmt = fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", x.table, pgx.Identifier{x.name}.Sanitize())
		}
		if _, err := l.pool.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return out, nil
}

// createIndexes rebuilds what dropIndexes dropped, Concurrency at a time.
func (l *loader) createIndexes(ctx context.Context, idx []dbIndex) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(l.o.Concurrency)
	for _, x := range idx {
		g.Go(func() error {
			stmt := x.def
			if x.constraint {
				stmt = fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", x.table, pgx.Identifier{x.name}.Sanitize(), x.def)
			}
			if _, err := l.pool.Exec(gctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func (l *loader) analyze(ctx context.Context, tables []string) error {
	for _, t := range append(tables, "keymigrate.runs", "keymigrate.control") {
		if _, err := l.pool.Exec(ctx, "ANALYZE "+t); err != nil {
			return fmt.Errorf("analyze %s: %w", t, err)
		}
	}
	return nil
}

func (l *loader) count(ctx context.Context, res *LoadResult) error {
	err := l.pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE owner_id IS NULL) FROM %s`, l.photos)).Scan(&res.Photos, &res.Ownerless)
	if err != nil {
		return err
	}
	return l.pool.QueryRow(ctx, `SELECT count(*) FROM keymigrate.object_moves`).Scan(&res.ObjectMoves)
}
