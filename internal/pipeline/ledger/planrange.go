package ledger

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A plan split by range (internal/ops/plan) analyses the bucket one range of
// legacy job ids at a time: the range's objects (listed by key range), the
// photos rows whose key columns name a job of the range (found by the
// application's job indexes, ApplicationIndexes), joined, counted, and
// truncated before the next range. The session's temporary tables then hold
// one range at a time, whatever the bucket's size.
//
// A range [lo, hi) is compared with the part of a key after its legacy prefix
// (keyPos in internal/ops/plan), in byte order. Its bounds are made of letters and digits
// only, which sort after the '.' and '/' that end a job id in every legacy
// key: all the objects of a job, under every prefix, are in the range of the
// job id itself.

// The job of each key column, as the application's job indexes compute it
// (the same expressions, so that the indexes answer the range scans).
var planJobExprs = []string{
	`substring(original_key FROM '^uploaded/([A-Za-z0-9-]+)\.[^./]+$')`,
	`substring(processed_key FROM '^restored/([A-Za-z0-9-]+)/')`,
	`substring(thumbnail_key FROM '^thumbnails/([A-Za-z0-9-]+)\.jpg$')`,
}

// The same patterns in Go, to tell which rows those indexes find.
var planJobREs = []*regexp.Regexp{
	regexp.MustCompile(`^uploaded/([A-Za-z0-9-]+)\.[^./]+$`),
	regexp.MustCompile(`^restored/([A-Za-z0-9-]+)/`),
	regexp.MustCompile(`^thumbnails/([A-Za-z0-9-]+)\.jpg$`),
}

// PlanIndexed reports whether the range scans of PlanPhotosInRange find
// every legacy key column of p in the range of its key: each such column
// matches its job index's pattern. The other rows (keys a worker would
// dead-letter, mostly) are loaded once, by Split's plan_odd.
func PlanIndexed(p Photo) bool {
	for i, k := range []*string{&p.Original, p.Processed, p.Thumbnail} {
		if k == nil || strings.HasPrefix(*k, "users/") {
			continue
		}
		if !planJobREs[i].MatchString(*k) {
			return false
		}
	}
	return true
}

// PlanOddRef is a key column of a row PlanIndexed does not cover, with Pos
// its key's position (after its legacy prefix).
type PlanOddRef struct {
	PlanRef
	Pos string
}

// PlanKeysBytewise reports whether the photos table's key columns sort in
// byte order (a C or C.UTF-8 collation), the order of S3's listing: only
// then do the job indexes' range scans return exactly a range's rows.
func (s *Store) PlanKeysBytewise(ctx context.Context) (bool, error) {
	var coll string
	err := s.pool.QueryRow(ctx, `
SELECT CASE WHEN c.collname = 'default' THEN d.datcollate ELSE c.collname END
  FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation, pg_database d
 WHERE a.attrelid = 'photos'::regclass AND a.attname = 'original_key' AND d.datname = current_database()`).Scan(&coll)
	if err != nil {
		return false, fmt.Errorf("plan: read the collation of photos.original_key: %w", err)
	}
	u := strings.ToUpper(coll)
	return u == "C" || u == "POSIX" || strings.HasPrefix(u, "C."), nil
}

// PlanJobSample returns the jobs of the original_key column of about pct
// percent of the photos table's pages (TABLESAMPLE), to cut it into ranges.
// The sample is repeatable (the same pages of the same table, whichever
// process asks): the shards of a plan (plan --shard) cut the same ranges
// without talking to each other.
func (s *Store) PlanJobSample(ctx context.Context, pct float64) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT j FROM (SELECT `+planJobExprs[0]+` AS j FROM photos TABLESAMPLE SYSTEM ($1) REPEATABLE (0)) s WHERE j IS NOT NULL`, pct)
	if err != nil {
		return nil, fmt.Errorf("plan: sample the photos' jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("plan: sample the photos' jobs: %w", err)
	}
	return out, nil
}

// PlanPhotosInRange calls each once for every photos row with a key column
// whose job (as the job indexes compute it) is in [lo, hi) (no upper bound if
// hi is ""): three index range scans, one per key column. A row is returned by
// the first of its columns whose job is in the range only: the later scans
// leave out the rows an earlier column already found, which would otherwise
// come two or three times (a photo's original, processed and thumbnail keys
// usually name the same job). The rows are streamed to each, never collected:
// a plan at 10^7 photos held each range's rows, three times over, in memory
// (docs/scale.md, "plan's memory"). each runs while the query's connection is
// held; it must not use the Store.
func (s *Store) PlanPhotosInRange(ctx context.Context, lo, hi string, each func(Photo) error) error {
	inRange := func(e string) string {
		if hi == "" {
			return e + ` >= $1`
		}
		return e + ` >= $1 AND ` + e + ` < $2`
	}
	parts := make([]string, len(planJobExprs))
	for i, e := range planJobExprs {
		cond := inRange(e)
		for _, earlier := range planJobExprs[:i] {
			// IS NOT TRUE: an earlier column with no job (NULL) did not find the row.
			cond += ` AND (` + inRange(earlier) + `) IS NOT TRUE`
		}
		parts[i] = `SELECT ` + photoColumns + ` FROM photos WHERE ` + cond
	}
	args := []any{lo}
	if hi != "" {
		args = append(args, hi)
	}
	// UNION ALL: the conditions make the parts disjoint already; a UNION
	// would sort or hash the range's rows within the pool's work_mem and
	// spill them to temporary files.
	rows, err := s.pool.Query(ctx, strings.Join(parts, "\nUNION ALL\n"), args...)
	if err != nil {
		return fmt.Errorf("plan: read the rows of jobs [%q, %q): %w", lo, hi, err)
	}
	defer rows.Close()
	for rows.Next() {
		p, err := scanPhoto(rows)
		if err != nil {
			return fmt.Errorf("plan: read the rows of jobs [%q, %q): %w", lo, hi, err)
		}
		if err := each(p); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("plan: read the rows of jobs [%q, %q): %w", lo, hi, err)
	}
	return nil
}

// Split prepares the session for a plan by range: plan_jobs becomes a table
// of its own (a row's refs go to the range of their key, its job to the range
// of its job), and plan_odd holds the refs of the rows PlanIndexed does not
// cover, for the whole plan, indexed by position and job.
func (ps *PlanSession) Split(ctx context.Context) error {
	for _, stmt := range []string{
		`DROP VIEW plan_jobs`,
		`CREATE TEMP TABLE plan_jobs (photo_id text NOT NULL, class text NOT NULL, job text NOT NULL)`,
		`CREATE TEMP TABLE plan_odd (photo_id text NOT NULL, class text NOT NULL, col text NOT NULL, key text NOT NULL, job text COLLATE "C" NOT NULL, pos text COLLATE "C" NOT NULL)`,
		`CREATE INDEX ON plan_odd (pos)`,
		`CREATE INDEX ON plan_odd (job)`,
	} {
		if _, err := ps.conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("plan: prepare the split tables: %w", err)
		}
	}
	ps.split = true
	return nil
}

// CopyOddRefs streams the refs of rows PlanIndexed does not cover into
// plan_odd until ch is closed.
func (ps *PlanSession) CopyOddRefs(ctx context.Context, ch <-chan []PlanOddRef) (int64, error) {
	n, err := ps.conn.CopyFrom(ctx, pgx.Identifier{"plan_odd"}, []string{"photo_id", "class", "col", "key", "job", "pos"},
		&chanSource[PlanOddRef]{ctx: ctx, ch: ch, values: func(r PlanOddRef) []any { return []any{r.PhotoID, r.Class, r.Column, r.Key, r.Job, r.Pos} }})
	if err != nil {
		return n, fmt.Errorf("plan: load the rows with unindexed keys into Postgres: %w", err)
	}
	return n, nil
}

// PlanJob is a row's job, in the range of the job.
type PlanJob struct {
	PhotoID string
	Class   string
	Job     string
}

// BeginRange empties the range tables and loads into them the refs of
// plan_odd in [lo, hi) (by key position into plan_refs, by job into
// plan_jobs); then refs and jobs (the indexed rows' part of the range).
func (ps *PlanSession) BeginRange(ctx context.Context, lo, hi string, refs []PlanRef, jobs []PlanJob) error {
	cond := func(col string) string {
		if hi == "" {
			return col + ` >= $1`
		}
		return col + ` >= $1 AND ` + col + ` < $2`
	}
	args := []any{lo}
	if hi != "" {
		args = append(args, hi)
	}
	if _, err := ps.conn.Exec(ctx, `TRUNCATE plan_objects, plan_refs, plan_jobs`); err != nil {
		return fmt.Errorf("plan: empty the previous range: %w", err)
	}
	if _, err := ps.conn.Exec(ctx, `INSERT INTO plan_refs SELECT photo_id, class, col, key, job FROM plan_odd WHERE `+cond("pos"), args...); err != nil {
		return fmt.Errorf("plan: load the range's unindexed refs: %w", err)
	}
	if _, err := ps.conn.Exec(ctx, `INSERT INTO plan_jobs SELECT photo_id, class, job FROM plan_odd WHERE job <> '' AND `+cond("job"), args...); err != nil {
		return fmt.Errorf("plan: load the range's unindexed jobs: %w", err)
	}
	if _, err := ps.conn.CopyFrom(ctx, pgx.Identifier{"plan_refs"}, []string{"photo_id", "class", "col", "key", "job"},
		pgx.CopyFromSlice(len(refs), func(i int) ([]any, error) {
			r := refs[i]
			return []any{r.PhotoID, r.Class, r.Column, r.Key, r.Job}, nil
		})); err != nil {
		return fmt.Errorf("plan: load the range's rows into Postgres: %w", err)
	}
	if _, err := ps.conn.CopyFrom(ctx, pgx.Identifier{"plan_jobs"}, []string{"photo_id", "class", "job"},
		pgx.CopyFromSlice(len(jobs), func(i int) ([]any, error) {
			j := jobs[i]
			return []any{j.PhotoID, j.Class, j.Job}, nil
		})); err != nil {
		return fmt.Errorf("plan: load the range's jobs into Postgres: %w", err)
	}
	return nil
}
