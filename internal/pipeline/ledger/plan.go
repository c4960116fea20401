package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The pre-flight plan (internal/ops/plan) joins a listing of the legacy prefixes
// with the photos rows. Neither side fits in the planner's memory on a large
// bucket, so both are streamed into temporary tables of one Postgres session
// (COPY) and joined there by set-based queries: the planner holds a page at a
// time, Postgres the rest (about 150 bytes per listed object and per legacy
// key column). On a large bucket the session holds one range of job ids at a
// time (planrange.go), so that neither the tables nor the joins' temporary
// files grow with the bucket. Nothing is written to the application's tables
// or to the ledger; the temporary tables end with the session.

// PlanObject is one listed legacy object, classified by the planner.
type PlanObject struct {
	Key          string
	Size         int64
	StorageClass string
	// Kind is the keylayout kind, or "unrecognised"; Job is its job id ("" if
	// unrecognised).
	Kind string
	Job  string
}

// PlanRef is one legacy key column of a photos row, classified by the planner.
type PlanRef struct {
	PhotoID string
	// Class is what a worker would do with the row: PlanMigrate, or why not.
	Class  string
	Column string
	Key    string
	Job    string
}

// The classes of a PlanRef's row.
const (
	PlanMigrate      = "migrate"           // valid owner, every legacy key recognised
	PlanOwnerless    = "ownerless"         // a worker archives it
	PlanArchived     = "archived"          // already archived
	PlanInvalidID    = "invalid_id"        // invalid owner or photo id: dead letter
	PlanUnrecognised = "unrecognised_keys" // a key column the layout does not know: dead letter
)

// PlanSession is the Postgres session holding a plan's temporary tables.
type PlanSession struct {
	conn *pgx.Conn
	// ledger is true when the ledger schema exists (objects it already moved
	// are then not counted as orphans).
	ledger bool
	// moves is true when the ledger records a moved object: without any,
	// no object is probed for one. (min: the job_id index answers it.)
	moves bool
	// split is true once Split made plan_jobs a table and added plan_odd.
	split bool
}

// PlanSessionOpen takes a connection out of the pool for the plan's
// temporary tables; Close ends the session (and the tables with it).
func (s *Store) PlanSessionOpen(ctx context.Context) (*PlanSession, error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("plan: take a database connection: %w", err)
	}
	// The session is not returned to the pool: its temporary tables die with it.
	ps := &PlanSession{conn: c.Hijack()}
	for _, stmt := range []string{
		`SET work_mem = '64MB'`,
		// mjob is the job the ledger files the key under (JobOf), by which
		// object_moves is looked up.
		`CREATE TEMP TABLE plan_objects (key text NOT NULL, size bigint NOT NULL, storage_class text NOT NULL, kind text NOT NULL, job text NOT NULL, mjob text NOT NULL)`,
		`CREATE TEMP TABLE plan_refs (photo_id text NOT NULL, class text NOT NULL, col text NOT NULL, key text NOT NULL, job text NOT NULL)`,
		// The rows' jobs, for the joins by job (derived objects, shared jobs,
		// orphaned animations and metadata): all of plan_refs in one range;
		// a table of its own when the plan is split (Split).
		`CREATE TEMP VIEW plan_jobs AS SELECT photo_id, class, job FROM plan_refs`,
	} {
		if _, err := ps.conn.Exec(ctx, stmt); err != nil {
			ps.Close()
			return nil, fmt.Errorf("plan: prepare temporary tables (the role needs TEMP on the database): %w", err)
		}
	}
	if err := ps.conn.QueryRow(ctx, `SELECT to_regclass('keymigrate.object_moves') IS NOT NULL`).Scan(&ps.ledger); err != nil {
		ps.Close()
		return nil, fmt.Errorf("plan: look for the ledger: %w", err)
	}
	if ps.ledger {
		if err := ps.conn.QueryRow(ctx, `SELECT min(job_id) IS NOT NULL FROM keymigrate.object_moves`).Scan(&ps.moves); err != nil {
			ps.Close()
			return nil, fmt.Errorf("plan: look for moved objects in the ledger: %w", err)
		}
	}
	return ps, nil
}

// Close ends the session.
func (ps *PlanSession) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ps.conn.Close(ctx)
}

// chanSource feeds COPY from a channel of batches.
type chanSource[T any] struct {
	ctx    context.Context
	ch     <-chan []T
	cur    []T
	i      int
	err    error
	values func(T) []any
}

func (c *chanSource[T]) Next() bool {
	for c.i >= len(c.cur) {
		select {
		case b, ok := <-c.ch:
			if !ok {
				return false
			}
			c.cur, c.i = b, 0
		case <-c.ctx.Done():
			c.err = c.ctx.Err()
			return false
		}
	}
	c.i++
	return true
}

func (c *chanSource[T]) Values() ([]any, error) { return c.values(c.cur[c.i-1]), nil }

func (c *chanSource[T]) Err() error { return c.err }

// CopyObjects streams listed objects into the session until ch is closed.
func (ps *PlanSession) CopyObjects(ctx context.Context, ch <-chan []PlanObject) (int64, error) {
	n, err := ps.conn.CopyFrom(ctx, pgx.Identifier{"plan_objects"}, []string{"key", "size", "storage_class", "kind", "job", "mjob"},
		&chanSource[PlanObject]{ctx: ctx, ch: ch, values: func(o PlanObject) []any { return []any{o.Key, o.Size, o.StorageClass, o.Kind, o.Job, JobOf(o.Key)} }})
	if err != nil {
		return n, fmt.Errorf("plan: load the listing into Postgres: %w", err)
	}
	return n, nil
}

// CopyRefs streams classified key columns into the session until ch is
// closed.
func (ps *PlanSession) CopyRefs(ctx context.Context, ch <-chan []PlanRef) (int64, error) {
	n, err := ps.conn.CopyFrom(ctx, pgx.Identifier{"plan_refs"}, []string{"photo_id", "class", "col", "key", "job"},
		&chanSource[PlanRef]{ctx: ctx, ch: ch, values: func(r PlanRef) []any { return []any{r.PhotoID, r.Class, r.Column, r.Key, r.Job} }})
	if err != nil {
		return n, fmt.Errorf("plan: load the photos rows into Postgres: %w", err)
	}
	return n, nil
}

// PlanQuery parameterises the plan's analysis.
type PlanQuery struct {
	MultipartThreshold int64
	PartSize           int64
	// ArchiveClasses are storage classes a copy cannot read until restored.
	ArchiveClasses []string
	Examples       int
}

// KindTotals are the copies of one kind of object.
type KindTotals struct {
	Objects   int64 `json:"objects"`
	Bytes     int64 `json:"bytes"`
	Multipart int64 `json:"multipart"`
	Parts     int64 `json:"parts"`
	Archived  int64 `json:"archive_class"`
}

// KeyExample names one object (and the photo concerned, if any).
type KeyExample struct {
	PhotoID string `json:"photo_id,omitempty"`
	Key     string `json:"key"`
	Detail  string `json:"detail,omitempty"`
	Rows    int64  `json:"rows,omitempty"`
	Size    int64  `json:"size,omitempty"`
}

// PlanFindings are the joins' results.
type PlanFindings struct {
	// Copies are the objects workers would copy for the photos to migrate,
	// by kind: one copy per photo and object (a legacy object two photos
	// reference is copied twice, once into each owner's prefix).
	Copies map[string]KindTotals `json:"copies"`
	// Missing are key columns of photos to migrate whose object the listing
	// did not show (dead letters: source_missing).
	MissingRefs     int64        `json:"missing_refs"`
	MissingPhotos   int64        `json:"missing_photos"`
	MissingExamples []KeyExample `json:"missing_examples"`
	// SharedKeys are legacy objects referenced by the key columns of more
	// than one row; SharedDerived the animations and metadata of a job that
	// more than one row derives.
	SharedKeys           int64        `json:"shared_keys"`
	SharedKeyExamples    []KeyExample `json:"shared_key_examples"`
	SharedJobs           int64        `json:"shared_jobs"`
	SharedDerived        int64        `json:"shared_derived_objects"`
	ArchiveClassCopies   int64        `json:"archive_class_copies"`
	ArchiveClassExamples []KeyExample `json:"archive_class_examples"`
	Orphans              int64        `json:"orphans"`
	OrphanBytes          int64        `json:"orphan_bytes"`
	OrphanExamples       []KeyExample `json:"orphan_examples"`
	AlreadyMoved         int64        `json:"already_moved"`
	LedgerChecked        bool         `json:"ledger_checked"`
}

// Analyze runs the joins once both tables are loaded: the copies to make,
// the referenced objects missing, the objects several photos share, and the
// orphans (listed objects no photo references), each a count and examples.
func (ps *PlanSession) Analyze(ctx context.Context, q PlanQuery) (*PlanFindings, error) {
	f := &PlanFindings{Copies: map[string]KindTotals{}, LedgerChecked: ps.ledger}
	c := ps.conn
	// A split plan analyses each range in turn: the previous range's copies go.
	if _, err := c.Exec(ctx, `DROP TABLE IF EXISTS plan_copies`); err != nil {
		return nil, fmt.Errorf("plan: drop the previous range's copies: %w", err)
	}
	// Temporary tables are never analysed by autovacuum: without statistics
	// the planner would guess nested loops over millions of rows.
	tables := []string{"plan_objects", "plan_refs"}
	if ps.split {
		tables = append(tables, "plan_jobs")
	}
	for _, t := range tables {
		if _, err := c.Exec(ctx, `ANALYZE `+t); err != nil {
			return nil, fmt.Errorf("plan: analyze %s: %w", t, err)
		}
	}
	for _, phase := range []func(context.Context, PlanQuery, *PlanFindings) error{
		ps.analyzeCopies, ps.analyzeMissing, ps.analyzeShared, ps.analyzeOrphans,
	} {
		if err := phase(ctx, q, f); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// analyzeCopies joins the photos to migrate to the listing into plan_copies
// (one row per photo and object, the derived objects of its job included)
// and counts them by kind, the multipart and archive-class ones too.
func (ps *PlanSession) analyzeCopies(ctx context.Context, q PlanQuery, f *PlanFindings) error {
	c := ps.conn
	if _, err := c.Exec(ctx, `CREATE TEMP TABLE plan_copies AS
WITH jobs AS (SELECT DISTINCT photo_id, job FROM plan_jobs WHERE class = 'migrate' AND job <> '')
SELECT r.photo_id, o.key, o.kind, o.size, o.storage_class FROM plan_refs r JOIN plan_objects o ON o.key = r.key WHERE r.class = 'migrate'
UNION ALL
SELECT j.photo_id, o.key, o.kind, o.size, o.storage_class FROM jobs j JOIN plan_objects o ON o.job = j.job AND o.kind IN ('animation', 'metadata')`); err != nil {
		return fmt.Errorf("plan: join copies: %w", err)
	}
	rows, err := c.Query(ctx, `
SELECT kind, count(*), coalesce(sum(size), 0)::bigint,
       count(*) FILTER (WHERE size > $1),
       coalesce(sum(ceil(size::numeric / $2)) FILTER (WHERE size > $1), 0)::bigint,
       count(*) FILTER (WHERE storage_class = ANY($3))
  FROM plan_copies GROUP BY kind`, q.MultipartThreshold, q.PartSize, q.ArchiveClasses)
	if err != nil {
		return fmt.Errorf("plan: count copies: %w", err)
	}
	for rows.Next() {
		var kind string
		var t KindTotals
		if err := rows.Scan(&kind, &t.Objects, &t.Bytes, &t.Multipart, &t.Parts, &t.Archived); err != nil {
			rows.Close()
			return fmt.Errorf("plan: count copies: %w", err)
		}
		f.Copies[kind] = t
		f.ArchiveClassCopies += t.Archived
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("plan: count copies: %w", err)
	}
	if err := ps.examples(ctx, q, &f.ArchiveClassExamples, `SELECT photo_id, key, storage_class, 0::bigint, size FROM plan_copies WHERE storage_class = ANY($2) ORDER BY key, photo_id LIMIT $1`, q.ArchiveClasses); err != nil {
		return fmt.Errorf("plan: archive-class copies: %w", err)
	}
	return nil
}

// examples reads up to q.Examples rows of sql, whose $1 is the limit and
// args the parameters from $2, into dst.
func (ps *PlanSession) examples(ctx context.Context, q PlanQuery, dst *[]KeyExample, sql string, args ...any) error {
	rows, err := ps.conn.Query(ctx, sql, append([]any{q.Examples}, args...)...)
	if err != nil {
		return err
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[KeyExample])
	if err != nil {
		return err
	}
	*dst = out
	return nil
}

// analyzeMissing counts the key columns of photos to migrate whose object
// the listing did not show (they would be dead letters).
func (ps *PlanSession) analyzeMissing(ctx context.Context, q PlanQuery, f *PlanFindings) error {
	c := ps.conn
	missing := `FROM plan_refs r WHERE r.class = 'migrate' AND NOT EXISTS (SELECT 1 FROM plan_objects o WHERE o.key = r.key)`
	if err := c.QueryRow(ctx, `SELECT count(*), count(DISTINCT r.photo_id) `+missing).Scan(&f.MissingRefs, &f.MissingPhotos); err != nil {
		return fmt.Errorf("plan: missing objects: %w", err)
	}
	if err := ps.examples(ctx, q, &f.MissingExamples, `SELECT r.photo_id, r.key, r.col, 0::bigint, 0::bigint `+missing+` ORDER BY r.photo_id, r.col LIMIT $1`); err != nil {
		return fmt.Errorf("plan: missing objects: %w", err)
	}
	return nil
}

// analyzeShared counts the legacy objects more than one row references and
// the jobs whose derived objects more than one row derives.
func (ps *PlanSession) analyzeShared(ctx context.Context, q PlanQuery, f *PlanFindings) error {
	c := ps.conn
	shared := `SELECT key, count(DISTINCT photo_id) AS n FROM plan_refs GROUP BY key HAVING count(DISTINCT photo_id) > 1`
	if err := c.QueryRow(ctx, `SELECT count(*) FROM (`+shared+`) s`).Scan(&f.SharedKeys); err != nil {
		return fmt.Errorf("plan: shared objects: %w", err)
	}
	if err := ps.examples(ctx, q, &f.SharedKeyExamples, `SELECT '', key, '', n, 0::bigint FROM (`+shared+`) s ORDER BY n DESC, key LIMIT $1`); err != nil {
		return fmt.Errorf("plan: shared objects: %w", err)
	}
	if err := c.QueryRow(ctx, `
WITH jobs AS (SELECT job FROM plan_jobs WHERE job <> '' GROUP BY job HAVING count(DISTINCT photo_id) > 1)
SELECT (SELECT count(*) FROM jobs),
       (SELECT count(*) FROM plan_objects o JOIN jobs j ON j.job = o.job WHERE o.kind IN ('animation', 'metadata'))`).Scan(&f.SharedJobs, &f.SharedDerived); err != nil {
		return fmt.Errorf("plan: shared jobs: %w", err)
	}
	return nil
}

// analyzeOrphans counts the listed objects no photo references (nor, with
// the ledger, an earlier run already moved), and the objects already moved.
func (ps *PlanSession) analyzeOrphans(ctx context.Context, q PlanQuery, f *PlanFindings) error {
	c := ps.conn
	moved := "false"
	if ps.moves {
		// A sub-plan per object (the LIMIT keeps Postgres from turning it
		// into a join), which probes object_moves by its job_id index (its
		// lookups by legacy key go through the key's job): a hash join would
		// read the whole ledger once per statement and per range of a split
		// plan.
		moved = `((SELECT true FROM keymigrate.object_moves m WHERE m.job_id = o.mjob AND m.old_key = o.key LIMIT 1) IS NOT NULL)`
		if err := c.QueryRow(ctx, `SELECT count(*) FROM plan_objects o WHERE `+moved).Scan(&f.AlreadyMoved); err != nil {
			return fmt.Errorf("plan: objects already moved: %w", err)
		}
	}
	// Two anti-joins rather than one OR of NOT EXISTS, which Postgres cannot
	// run as a hash anti-join (it would probe plan_refs once per object).
	// The ledger's probe filters their result (OFFSET 0 keeps it out of
	// them): under it, Postgres guesses that almost no object is left and
	// joins by nested loops, one pass over plan_refs per object.
	orphan := `FROM (
SELECT o.* FROM (SELECT o.* FROM plan_objects o WHERE o.kind IN ('original', 'restored', 'thumbnail')
   AND NOT EXISTS (SELECT 1 FROM plan_refs r WHERE r.key = o.key) OFFSET 0) o WHERE NOT ` + moved + `
UNION ALL
SELECT o.* FROM (SELECT o.* FROM plan_objects o WHERE o.kind IN ('animation', 'metadata')
   AND NOT EXISTS (SELECT 1 FROM plan_jobs r WHERE r.job = o.job) OFFSET 0) o WHERE NOT ` + moved + `) o`
	if err := c.QueryRow(ctx, `SELECT count(*), coalesce(sum(size), 0)::bigint `+orphan).Scan(&f.Orphans, &f.OrphanBytes); err != nil {
		return fmt.Errorf("plan: orphans: %w", err)
	}
	if err := ps.examples(ctx, q, &f.OrphanExamples, `SELECT '', o.key, o.kind, 0::bigint, o.size `+orphan+` ORDER BY o.key LIMIT $1`); err != nil {
		return fmt.Errorf("plan: orphans: %w", err)
	}
	return nil
}

// SamplePhoto is a photo to migrate whose objects a calibration copies.
type SamplePhoto struct {
	PhotoID string
	Job     string
	Keys    []string
}

// SamplePhotos picks up to n photos to migrate whose referenced objects all
// exist in a readable storage class, spread over the table (by a hash of
// their id).
func (ps *PlanSession) SamplePhotos(ctx context.Context, n int, archiveClasses []string) ([]SamplePhoto, error) {
	rows, err := ps.conn.Query(ctx, `
WITH pick AS (
  SELECT r.photo_id FROM plan_refs r LEFT JOIN plan_objects o ON o.key = r.key
   WHERE r.class = 'migrate'
   GROUP BY r.photo_id
  HAVING bool_and(o.key IS NOT NULL AND NOT (o.storage_class = ANY($2)))
   ORDER BY md5(r.photo_id) LIMIT $1)
SELECT r.photo_id, max(r.job), array_agg(r.key ORDER BY r.col)
  FROM plan_refs r JOIN pick USING (photo_id) GROUP BY r.photo_id`, n, archiveClasses)
	if err != nil {
		return nil, fmt.Errorf("plan: pick calibration photos: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[SamplePhoto])
	if err != nil {
		return nil, fmt.Errorf("plan: pick calibration photos: %w", err)
	}
	return out, nil
}

// Latency is a distribution of per-photo migration times.
type Latency struct {
	Photos int64   `json:"photos"`
	P50    float64 `json:"p50_seconds"`
	P90    float64 `json:"p90_seconds"`
	Mean   float64 `json:"mean_seconds"`
	// PeakInFlight is the most photos that were between their start and
	// their swap at once; Occupancy the mean in flight over the photos' span
	// divided by it (0: unknown).
	PeakInFlight int64   `json:"peak_in_flight"`
	Occupancy    float64 `json:"occupancy"`
}
