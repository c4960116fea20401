package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/synths3"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// Every statement the ledger runs against photos, photo_moves and
// object_moves must use an index at scale: at a billion photos a statement
// that reads a whole table where an index could answer turns a phase of days
// into one of months (design invariant 13). This test loads two million
// photos and the ledger of their finished migration (synths3's loader, the
// ledger's own schema), calls every method of Store, Selector and PlanSession
// with realistic arguments, records every statement they run (a pgx tracer),
// and EXPLAINs each one with its arguments: a sequential scan of one of the
// three tables fails it, unless the method is listed below as a deliberate
// full pass, with the reason. A method that is in neither list fails it too,
// so a new statement cannot arrive without a plan check. It runs for both
// photo id types the ledger supports.

// planRows is the size the plans are checked at (KEYMIGRATE_PLAN_ROWS to try
// another; the planner's choices are only meaningful at scale).
func planRows(t *testing.T) int64 {
	if v := os.Getenv("KEYMIGRATE_PLAN_ROWS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err)
		return n
	}
	return 2_000_000
}

// bigTables are the tables no statement may read whole: those that grow with
// the photos or the objects. object_audit holds a row per photo and job once
// `ledger compact` ran; failures a row per failed attempt (transient ones
// too: a billion photos hand some back); purges a row per legacy object
// `archived purge` deleted; assignments a row per archived photo an operator
// gave an owner. (runs, run_shards, pass_cursors, pass_bounds, workers,
// counter_* and the inventory's reports and files stay small.)
var bigTables = map[string]bool{"photos": true, "photo_moves": true, "object_moves": true, "inventory_objects": true,
	"object_audit": true, "failures": true, "purges": true, "assignments": true}

// fullPasses are the methods that read a whole table on purpose, and why.
var fullPasses = map[string]string{
	"CensusTake":               "the census counts every legacy row the ledger has not recorded: on demand (status --census), never per snapshot",
	"PhotoCountLegacy":         "counts every legacy row (producer's --dry-run estimate and plan), once per command",
	"PhotoEachLegacy":          "visits every legacy row, a page at a time (keyset), by design",
	"PlanSession.Analyze":      "the pre-flight plan joins the whole listing with every row, once per plan",
	"PlanSession.SamplePhotos": "samples from the plan's full join",
	"AuditCountCompactable":    "counts what ledger compact would fold: once per compaction, before it starts",
	"PhotoMoveTotals":          "the bench's totals of a measured run (internal/harness/bench), once after it; no product command calls it",
	"Migrate":                  "schema migrations",
}

// noStatements are the methods that run no statement against the tables.
var noStatements = map[string]string{
	"Pool": "returns the pool", "Close": "closes the pool", "Selector.IDType": "returns a field",
	"PlanSession.Close": "drops the session's temp tables", "PlanSession.CopyObjects": "COPY into a temp table",
	"PlanSession.CopyRefs": "COPY into a temp table", "PlanSession.CopyOddRefs": "COPY into a temp table",
}

// statement is one statement a call ran.
type statement struct {
	sql  string
	args []any
}

type recorder struct {
	mu    sync.Mutex
	stmts []statement
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stmts = append(r.stmts, statement{sql: d.SQL, args: slices.Clone(d.Args)})
	return ctx
}

func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// The statements a method sends in a batch (ledger's twoTrips) are recorded
// one by one, as if sent alone.
func (r *recorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (r *recorder) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stmts = append(r.stmts, statement{sql: d.SQL, args: slices.Clone(d.Args)})
}

func (r *recorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (r *recorder) take() []statement {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stmts
	r.stmts = nil
	return s
}

func TestEveryStatementUsesAnIndexAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("loads two million rows")
	}
	for _, idType := range []synths3.IDType{synths3.IDBigint, synths3.IDUUID} {
		t.Run(string(idType), func(t *testing.T) {
			checkPlans(t, idType)
		})
	}
}

// sample is what the calls are made with: real rows of the loaded ledger.
type sample struct {
	ids, jobs, oldKeys, newKeys, owners []string
	photo                               ledger.Photo
	move                                ledger.ObjectMove
	runID                               string
	inventory                           ledger.InventoryReport
}

func checkPlans(t *testing.T, idType synths3.IDType) {
	ctx := context.Background()
	url := testenv.NewDatabase(t)
	ks, err := synths3.New(synths3.Config{Photos: planRows(t), IDType: idType})
	require.NoError(t, err)
	start := time.Now()
	res, err := synths3.Load(ctx, url, ks, synths3.LoadOptions{State: synths3.FinishedState, Concurrency: 2})
	require.NoError(t, err)
	t.Logf("loaded %d photos and %d object moves (%s ids) in %s", res.Photos, res.ObjectMoves, idType, time.Since(start).Round(time.Second))

	rec := &recorder{}
	st, err := ledger.OpenWith(ctx, url, ledger.Options{MaxConns: 4, Tracer: rec})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	// A tenth of the photos are legacy again and unknown to the ledger (the
	// producer's and the plan's statements read those), as mid-migration.
	pool := st.Pool()
	_, err = pool.Exec(ctx, `
WITH back AS (
    SELECT m.photo_id FROM keymigrate.photo_moves m WHERE m.state = 'migrated' AND hashtext(m.photo_id) % 10 = 0)
UPDATE photos p SET original_key = 'uploaded/' || replace(p.id::text, '-', '') || '.jpg', thumbnail_key = NULL, processed_key = NULL
  FROM back WHERE p.id::text = back.photo_id`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM keymigrate.object_moves o USING photos p WHERE o.photo_id = p.id::text AND p.original_key LIKE 'uploaded/%'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM keymigrate.photo_moves m USING photos p WHERE m.photo_id = p.id::text AND p.original_key LIKE 'uploaded/%'`)
	require.NoError(t, err)
	for _, idx := range ledger.ApplicationIndexes {
		_, err = pool.Exec(ctx, idx)
		require.NoError(t, err, idx)
	}
	loadInventory(t, st, ks)
	seedPerPhotoTables(t, st)
	for _, table := range []string{"photos", "keymigrate.photo_moves", "keymigrate.object_moves", "keymigrate.inventory_objects",
		"keymigrate.object_audit", "keymigrate.failures", "keymigrate.purges", "keymigrate.assignments"} {
		_, err = pool.Exec(ctx, "VACUUM ANALYZE "+table)
		require.NoError(t, err)
	}
	s := takeSample(t, st)
	rec.take()
	// EXPLAIN through a pool of its own: the tracer must see only the calls'.
	explain, err := ledger.OpenWith(ctx, url, ledger.Options{MaxConns: 2})
	require.NoError(t, err)
	t.Cleanup(explain.Close)

	calls := planCalls(st, s)
	checkCoverage(t, calls)
	names := make([]string, 0, len(calls))
	for n := range calls {
		names = append(names, n)
	}
	// Reads first, in name order; writes after, so they see the data reads saw.
	sort.Slice(names, func(i, j int) bool {
		wi, wj := calls[names[i]].writes, calls[names[j]].writes
		if wi != wj {
			return !wi
		}
		return names[i] < names[j]
	})
	checked := 0
	ran := map[string][]statement{}
	for _, name := range names {
		c := calls[name]
		if _, ok := noStatements[name]; ok {
			continue
		}
		if err := c.fn(ctx); err != nil {
			t.Logf("%s: %v (its statements up to the error are still checked)", name, err)
		}
		stmts := rec.take()
		if len(stmts) == 0 {
			t.Errorf("%s ran no statement: list it in noStatements with the reason, or give it arguments that reach its statements", name)
		}
		for _, stmt := range stmts {
			if strings.HasPrefix(name, "PlanSession.") && strings.Contains(stmt.sql, "plan_") {
				// The plan's own temporary tables live in its session: they
				// cannot be EXPLAINed from another one, and the plan reads
				// them whole by design (a full pass, listed above).
				continue
			}
			ran[name] = append(ran[name], stmt) // its generic plan is checked below
			scans := seqScans(t, explain.Pool(), stmt)
			if len(scans) == 0 {
				checked++
				continue
			}
			if reason, ok := fullPasses[name]; ok {
				t.Logf("%s: full pass over %v (deliberate: %s)", name, scans, reason)
				checked++
				continue
			}
			args := fmt.Sprint(stmt.args)
			if len(args) > 300 {
				args = args[:300] + "…"
			}
			t.Errorf("%s reads the whole of %v:\n%s\nargs %s\nuse an index (or list it in fullPasses with the reason)", name, scans, strings.TrimSpace(stmt.sql), args)
		}
	}
	t.Logf("%d statements of %d methods checked", checked, len(calls))
	checkGenericPlans(t, url, idType, names, ran)
}

// checkGenericPlans EXPLAINs the generic plan of every statement ran
// recorded (those checkPlans EXPLAINed: not the plan's temporary tables), as a worker's connection makes it (ledger.Options.GenericPlans):
// once, without the arguments, kept for the life of the connection. It does
// so on the loaded ledger (url) and on a nearly empty one, where a worker
// makes its plans at the start of every migration: every statement must
// use an index on both, bar the deliberate full passes.
func checkGenericPlans(t *testing.T, url string, idType synths3.IDType, names []string, ran map[string][]statement) {
	ctx := context.Background()
	ks, err := synths3.New(synths3.Config{Photos: 1, IDType: idType})
	require.NoError(t, err)
	empty := testenv.NewDatabase(t)
	_, err = synths3.Load(ctx, empty, ks, synths3.LoadOptions{State: synths3.FinishedState, Concurrency: 1})
	require.NoError(t, err)
	checked := 0
	for _, db := range []struct{ name, url string }{{"loaded", url}, {"empty", empty}} {
		st, err := ledger.OpenWith(ctx, db.url, ledger.Options{MaxConns: 1, GenericPlans: true})
		require.NoError(t, err)
		conn, err := st.Pool().Acquire(ctx)
		require.NoError(t, err)
		if db.name == "empty" {
			for _, idx := range ledger.ApplicationIndexes {
				_, err = conn.Exec(ctx, idx)
				require.NoError(t, err, idx)
			}
		}
		for _, name := range names {
			if _, ok := fullPasses[name]; ok {
				continue
			}
			for _, stmt := range ran[name] {
				if scans := genericSeqScans(t, conn.Conn(), stmt); len(scans) > 0 {
					t.Errorf("%s: its generic plan on the %s ledger reads the whole of %v:\n%s\nuse an index that a plan made without the arguments can use",
						name, db.name, scans, strings.TrimSpace(stmt.sql))
				}
				checked++
			}
		}
		conn.Release()
		st.Close()
	}
	t.Logf("%d generic plans checked", checked)
}

// seqScans EXPLAINs stmt with its arguments and returns the big tables it
// scans sequentially.
func seqScans(t *testing.T, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, stmt statement) []string {
	t.Helper()
	q := strings.TrimSpace(stmt.sql)
	if !explainable(q) {
		return nil
	}
	var plan []byte
	if err := pool.QueryRow(context.Background(), "EXPLAIN (FORMAT JSON) "+q, stmt.args...).Scan(&plan); err != nil {
		t.Errorf("EXPLAIN %s: %v", q, err)
		return nil
	}
	return bigSeqScans(t, plan)
}

// explainable says whether q is a statement EXPLAIN takes (not a
// transaction, session or schema command).
func explainable(q string) bool {
	upper := strings.ToUpper(q)
	for _, skip := range []string{"BEGIN", "COMMIT", "ROLLBACK", "SET ", "SAVEPOINT", "RELEASE", "CREATE ", "DROP ", "ANALYZE", "SELECT PG_", "LOCK ", "TRUNCATE ", "EXPLAIN "} {
		if strings.HasPrefix(upper, skip) {
			return false
		}
	}
	return true
}

// genericSeqScans prepares stmt on conn, whose session forces generic plans
// (plan_cache_mode = force_generic_plan), and returns the big tables its
// generic plan scans sequentially: the plan a worker's connection makes once
// and keeps (ledger.Options.GenericPlans). A generic plan does not depend on
// the arguments, so the EXPLAIN passes NULL for each.
func genericSeqScans(t *testing.T, conn *pgx.Conn, stmt statement) []string {
	t.Helper()
	ctx := context.Background()
	q := strings.TrimSpace(stmt.sql)
	if !explainable(q) {
		return nil
	}
	sd, err := conn.Prepare(ctx, "generic_check", q)
	if err != nil {
		t.Errorf("prepare %s: %v", q, err)
		return nil
	}
	defer func() { _ = conn.Deallocate(ctx, "generic_check") }()
	exec := "EXECUTE generic_check"
	if n := len(sd.ParamOIDs); n > 0 {
		exec += "(" + strings.TrimSuffix(strings.Repeat("NULL,", n), ",") + ")"
	}
	var plan []byte
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+exec, pgx.QueryExecModeSimpleProtocol).Scan(&plan); err != nil {
		t.Errorf("EXPLAIN the generic plan of %s: %v", q, err)
		return nil
	}
	return bigSeqScans(t, plan)
}

// bigSeqScans returns the big tables an EXPLAIN (FORMAT JSON) plan scans
// sequentially.
func bigSeqScans(t *testing.T, plan []byte) []string {
	var root []struct {
		Plan map[string]any `json:"Plan"`
	}
	require.NoError(t, json.Unmarshal(plan, &root))
	var out []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if n["Node Type"] == "Seq Scan" {
			if rel, _ := n["Relation Name"].(string); bigTables[rel] {
				out = append(out, rel)
			}
		}
		if kids, ok := n["Plans"].([]any); ok {
			for _, k := range kids {
				if m, ok := k.(map[string]any); ok {
					walk(m)
				}
			}
		}
	}
	for _, r := range root {
		walk(r.Plan)
	}
	return out
}

// checkCoverage fails on an exported method of Store, Selector or
// PlanSession that has no call below and is not listed as running nothing.
func checkCoverage(t *testing.T, calls map[string]planCall) {
	t.Helper()
	for _, typ := range []reflect.Type{reflect.TypeFor[*ledger.Store](), reflect.TypeFor[*ledger.Selector](), reflect.TypeFor[*ledger.PlanSession]()} {
		prefix := ""
		if typ != reflect.TypeFor[*ledger.Store]() {
			prefix = typ.Elem().Name() + "."
		}
		for i := range typ.NumMethod() {
			name := prefix + typ.Method(i).Name
			_, called := calls[name]
			_, none := noStatements[name]
			if !called && !none {
				t.Errorf("%s has no plan check: add a call to planCalls (or list it in noStatements with the reason)", name)
			}
		}
	}
	for name := range fullPasses {
		if _, ok := calls[name]; !ok {
			t.Errorf("fullPasses lists %s, which is not a method any more: remove it", name)
		}
	}
}

func takeSample(t *testing.T, st *ledger.Store) sample {
	t.Helper()
	ctx := context.Background()
	pool := st.Pool()
	s := sample{runID: "run-synthetic"}
	rows, err := pool.Query(ctx, `SELECT m.photo_id, m.job_id FROM keymigrate.photo_moves m WHERE m.state = 'migrated' ORDER BY m.photo_id LIMIT 500`)
	require.NoError(t, err)
	for rows.Next() {
		var id, job string
		require.NoError(t, rows.Scan(&id, &job))
		s.ids, s.jobs = append(s.ids, id), append(s.jobs, job)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, s.ids)
	rows, err = pool.Query(ctx, `SELECT old_key, new_key FROM keymigrate.object_moves WHERE photo_id = ANY($1) ORDER BY new_key`, s.ids)
	require.NoError(t, err)
	for rows.Next() {
		var o, n string
		require.NoError(t, rows.Scan(&o, &n))
		s.oldKeys, s.newKeys = append(s.oldKeys, o), append(s.newKeys, n)
	}
	require.NoError(t, rows.Err())
	s.photo, err = st.PhotoGet(ctx, s.ids[0])
	require.NoError(t, err)
	moves, err := st.ObjectMoveListOfPhoto(ctx, s.ids[0])
	require.NoError(t, err)
	require.NotEmpty(t, moves)
	s.move = moves[0]
	if s.photo.OwnerID != nil {
		s.owners = []string{*s.photo.OwnerID}
	}
	var ok bool
	s.inventory, ok, err = st.InventoryLatest(ctx)
	require.NoError(t, err)
	require.True(t, ok, "the inventory loaded")
	return s
}

// seedPerPhotoTables fills the other tables that grow with the photos at the
// plan test's scale, in SQL (seconds): an audit row per ledger row (as after
// `ledger compact` of a finished migration; each a valid packed row with no
// moves, so the readers' unpacking succeeds and their later statements run),
// a transient failure per second ledger row and a permanent, redriven one per
// fiftieth, as many purges as ledger rows (at 10^9 photos, 5% ownerless at
// 3.4 objects a photo, purges holds 1.7 × 10^8 rows; a sixth of the test's
// rows, 333,000, is small enough that the planner rightly reads it whole for
// a page's 1,700 keys, which is not the choice it makes at scale), and an
// assignment per twentieth (ids of their own: the calls' photos stay
// assignable).
func seedPerPhotoTables(t *testing.T, st *ledger.Store) {
	t.Helper()
	ctx := context.Background()
	pool := st.Pool()
	empty, err := ledger.PackAuditEmpty()
	require.NoError(t, err)
	var n int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM keymigrate.photo_moves`).Scan(&n))
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO keymigrate.object_audit (photo_id, job_id, moves, objects)
SELECT photo_id, job_id, 0, $1 FROM keymigrate.photo_moves WHERE job_id IS NOT NULL`, []any{empty}},
		{`INSERT INTO keymigrate.failures (at, photo_id, run_id, message_id, reason, permanent, error, receive_count, redriven_at)
SELECT now() - interval '1 day', photo_id, run_id, 'msg-' || photo_id, CASE WHEN h % 25 = 0 THEN 'source_missing' ELSE 'transient' END,
       h % 25 = 0, 'seeded', 1, CASE WHEN h % 25 = 0 THEN now() END
  FROM (SELECT photo_id, run_id, abs(hashtext(photo_id)) h FROM keymigrate.photo_moves) m WHERE h % 2 = 0`, nil},
		{`INSERT INTO keymigrate.purges (old_key, photo_id, etag, size, intent_at, deleted_at)
SELECT 'uploaded/purged-' || g || '.jpg', 'purged-' || g, 'e', 1, now() - interval '1 day', now() - interval '1 day'
  FROM generate_series(1, $1::bigint) g`, []any{n}},
		{`INSERT INTO keymigrate.assignments (photo_id, owner_id, run_id, old_status, assigned_at, assigned_by, source, enqueued_at)
SELECT 'assigned-' || g, '1', 'assign-seeded', 'ready', now() - interval '1 day', 't', 'seeded', now() - interval '1 day'
  FROM generate_series(1, $1::bigint / 20) g`, []any{n}},
	} {
		_, err := pool.Exec(ctx, q.sql, q.args...)
		require.NoError(t, err, q.sql)
	}
}

// planManifest is the inventory report the plan test loads: one data file of
// every photo's legacy original (a row per photo is enough for the planner's
// choices; a real report has every object).
var planManifest = ledger.InventoryManifest{Location: "plan-test", SourceBucket: "synthetic", Format: "CSV",
	CreatedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Files: []ledger.InventoryFile{{Key: "data/1.csv.gz", Size: 1, MD5: "00"}}}

// loadInventory loads planManifest through the ledger's own loader.
func loadInventory(t *testing.T, st *ledger.Store, ks *synths3.Keyspace) {
	t.Helper()
	ctx := context.Background()
	r, err := st.InventoryReportBegin(ctx, planManifest)
	require.NoError(t, err)
	read := func(context.Context, ledger.InventoryFile) iter.Seq2[ledger.InventoryObject, error] {
		return func(yield func(ledger.InventoryObject, error) bool) {
			for i := range ks.Photos() {
				o := ks.Photo(i).Objects[0]
				if !yield(ledger.InventoryObject{Key: o.LegacyKey, Size: o.Size, ETag: o.ETag, StorageClass: "STANDARD", LastModified: o.LastModified}, nil) {
					return
				}
			}
		}
	}
	for {
		_, more, err := st.InventoryLoadNextFile(ctx, r, read)
		require.NoError(t, err)
		if !more {
			return
		}
	}
}

// planCall is one method's call.
type planCall struct {
	writes bool
	fn     func(ctx context.Context) error
}

func read(fn func(ctx context.Context) error) planCall  { return planCall{fn: fn} }
func write(fn func(ctx context.Context) error) planCall { return planCall{writes: true, fn: fn} }

func discard[T any](_ T, err error) error { return err }

// planCalls calls every method with arguments from s.
func planCalls(st *ledger.Store, s sample) map[string]planCall {
	id, oldKey, newKey := s.ids[0], s.move.OldKey, s.move.NewKey
	last := s.ids[len(s.ids)-1]
	hour := time.Hour
	cutoff := time.Now().Add(-24 * time.Hour)
	return map[string]planCall{
		"CheckSchema":         read(func(ctx context.Context) error { return st.CheckSchema(ctx) }),
		"Migrate":             read(func(ctx context.Context) error { return discard(st.Migrate(ctx)) }),
		"Now":                 read(func(ctx context.Context) error { return discard(st.Now(ctx)) }),
		"PhotoGet":            read(func(ctx context.Context) error { return discard(st.PhotoGet(ctx, id)) }),
		"PhotoGetMany":        read(func(ctx context.Context) error { return discard(st.PhotoGetMany(ctx, s.ids)) }),
		"PhotoMissingIndexes": read(func(ctx context.Context) error { return discard3(st.PhotoMissingIndexes(ctx)) }),
		"PhotoIDType":         read(func(ctx context.Context) error { return discard(st.PhotoIDType(ctx)) }),
		"PhotoOwnerIDType":    read(func(ctx context.Context) error { return discard(st.PhotoOwnerIDType(ctx)) }),
		"PhotoScanLegacy":     read(func(ctx context.Context) error { return discard(st.PhotoScanLegacy(ctx, id, 1000)) }),
		"PhotoScanLegacyRows": read(func(ctx context.Context) error { return discard(st.PhotoScanLegacyRows(ctx, id, 1000)) }),
		"PhotoScanAll":        read(func(ctx context.Context) error { return discard(st.PhotoScanAll(ctx, id, 1000)) }),
		"PhotoScanArchived":   read(func(ctx context.Context) error { return discard(st.PhotoScanArchived(ctx, id, 1000)) }),
		"PhotoCountLegacy":    read(func(ctx context.Context) error { return discard(st.PhotoCountLegacy(ctx)) }),
		"PhotoEachLegacy": read(func(ctx context.Context) error {
			return st.PhotoEachLegacy(ctx, func(ledger.Photo) error { return errStopEach })
		}),
		"PhotoLegacyKeysClaimed": read(func(ctx context.Context) error { return discard(st.PhotoLegacyKeysClaimed(ctx, s.oldKeys)) }),
		"PhotoListUsingJobs":     read(func(ctx context.Context) error { return discard(st.PhotoListUsingJobs(ctx, s.jobs)) }),
		"PhotoOwnersWithPhotos":  read(func(ctx context.Context) error { return discard(st.PhotoOwnersWithPhotos(ctx, s.owners)) }),
		"PhotoArchivedBefore":    read(func(ctx context.Context) error { return discard(st.PhotoArchivedBefore(ctx, s.ids, cutoff)) }),
		"PhotoAssignCandidates":  read(func(ctx context.Context) error { return discard(st.PhotoAssignCandidates(ctx, s.ids)) }),
		"PhotoShardBounds":       read(func(ctx context.Context) error { return discard(st.PhotoShardBounds(ctx, 8)) }),
		"PhotoMoveGet":           read(func(ctx context.Context) error { return discard2(st.PhotoMoveGet(ctx, id)) }),
		"PhotoMoveHistory":       read(func(ctx context.Context) error { return discard2(st.PhotoMoveHistory(ctx, id)) }),
		"PhotoMoveStates":        read(func(ctx context.Context) error { return discard(st.PhotoMoveStates(ctx, s.runID, s.ids)) }),
		"PhotoMoveListOfJobs":    read(func(ctx context.Context) error { return discard(st.PhotoMoveListOfJobs(ctx, s.jobs)) }),
		"PhotoMoveMigratedJobs":  read(func(ctx context.Context) error { return discard(st.PhotoMoveMigratedJobs(ctx, s.jobs)) }),
		"PhotoMoveCountOpen":     read(func(ctx context.Context) error { return discard(st.PhotoMoveCountOpen(ctx)) }),
		"PhotoMoveTotals":        read(func(ctx context.Context) error { return discard(st.PhotoMoveTotals(ctx)) }),
		"PhotoMoveRollbackCandidates": read(func(ctx context.Context) error {
			return discard(st.PhotoMoveRollbackCandidates(ctx, "", s.runID, id, 500))
		}),
		"ObjectMoveListOfPhoto":   read(func(ctx context.Context) error { return discard(st.ObjectMoveListOfPhoto(ctx, id)) }),
		"ObjectMoveListOpen":      read(func(ctx context.Context) error { return discard(st.ObjectMoveListOpen(ctx, id)) }),
		"ObjectMoveGetCopy":       read(func(ctx context.Context) error { return discard2(st.ObjectMoveGetCopy(ctx, newKey)) }),
		"ObjectMoveListByOldKeys": read(func(ctx context.Context) error { return discard(st.ObjectMoveListByOldKeys(ctx, s.oldKeys)) }),
		"ObjectMoveListCommitted": read(func(ctx context.Context) error { return discard(st.ObjectMoveListCommitted(ctx, newKey, 1000)) }),
		"ObjectMoveListCommittedOfRun": read(func(ctx context.Context) error {
			return discard(st.ObjectMoveListCommittedOfRun(ctx, s.runID, newKey, 1000))
		}),
		"ObjectMoveOldKeysMoved":      read(func(ctx context.Context) error { return discard(st.ObjectMoveOldKeysMoved(ctx, s.oldKeys)) }),
		"ObjectMoveDeletedLegacyKeys": read(func(ctx context.Context) error { return discard(st.ObjectMoveDeletedLegacyKeys(ctx, s.jobs)) }),
		"ObjectMoveLegacyDeletions":   read(func(ctx context.Context) error { return discard(st.ObjectMoveLegacyDeletions(ctx, s.oldKeys)) }),
		"CleanupListKeys": read(func(ctx context.Context) error {
			_, _, err := st.CleanupListKeys(ctx, 1, 4, "-1073741800 "+oldKey, 1000)
			return err
		}),
		"CleanupListPending":        read(func(ctx context.Context) error { return discard(st.CleanupListPending(ctx, 1, 4)) }),
		"PurgeListCandidates":       read(func(ctx context.Context) error { return discard(st.PurgeListCandidates(ctx, cutoff, "", 1000)) }),
		"PurgeListDone":             read(func(ctx context.Context) error { return discard(st.PurgeListDone(ctx, s.ids)) }),
		"AuditCountCompactable":     read(func(ctx context.Context) error { return discard3(st.AuditCountCompactable(ctx, cutoff)) }),
		"AuditCountCompacted":       read(func(ctx context.Context) error { return discard(st.AuditCountCompacted(ctx, id, "")) }),
		"RunFind":                   read(func(ctx context.Context) error { return discard(st.RunFind(ctx, s.runID)) }),
		"RunGet":                    read(func(ctx context.Context) error { return discard(st.RunGet(ctx, s.runID)) }),
		"RunList":                   read(func(ctx context.Context) error { return discard(st.RunList(ctx)) }),
		"RunListUnfinishedProducer": read(func(ctx context.Context) error { return discard(st.RunListUnfinishedProducer(ctx)) }),
		"RunPhotoIDs":               read(func(ctx context.Context) error { return discard(st.RunPhotoIDs(ctx, s.runID, id, 1000)) }),
		"RunScanRows":               read(func(ctx context.Context) error { return discard3(st.RunScanRows(ctx, s.runID, id, 1000)) }),
		"RunReportPage":             read(func(ctx context.Context) error { return discard(st.RunReportPage(ctx, s.runID, id, 500)) }),
		"RunMigrationLatency":       read(func(ctx context.Context) error { return discard(st.RunMigrationLatency(ctx, s.runID, 1000)) }),
		"RunPhotoIDsShard": read(func(ctx context.Context) error {
			return discard(st.RunPhotoIDsShard(ctx, s.runID, 1, 4, id, 500))
		}),
		"RunScanRowsShard": read(func(ctx context.Context) error {
			return discard3(st.RunScanRowsShard(ctx, s.runID, 1, 4, id, 500))
		}),
		"ObjectMoveListCommittedOfPhotos": read(func(ctx context.Context) error {
			return discard(st.ObjectMoveListCommittedOfPhotos(ctx, s.ids))
		}),
		"RunShardCount":           read(func(ctx context.Context) error { return discard(st.RunShardCount(ctx, s.runID)) }),
		"ControlGet":              read(func(ctx context.Context) error { return discard(st.ControlGet(ctx)) }),
		"WorkerListLive":          read(func(ctx context.Context) error { return discard(st.WorkerListLive(ctx, 10*time.Second)) }),
		"S3CapabilitiesGet":       read(func(ctx context.Context) error { return discard2(st.S3CapabilitiesGet(ctx, "synthetic")) }),
		"FailureListOpen":         read(func(ctx context.Context) error { return discard(st.FailureListOpen(ctx, "", 100)) }),
		"FailureListOfPhoto":      read(func(ctx context.Context) error { return discard(st.FailureListOfPhoto(ctx, id, 20)) }),
		"FailureListSince":        read(func(ctx context.Context) error { return discard(st.FailureListSince(ctx, 0, 100)) }),
		"FailureExhaustedRetries": read(func(ctx context.Context) error { return discard(st.FailureExhaustedRetries(ctx, 10, 100)) }),
		"CounterRead":             read(func(ctx context.Context) error { return discard(st.CounterRead(ctx, "", time.Minute, 10*time.Second)) }),
		"CensusGet":               read(func(ctx context.Context) error { return discard2(st.CensusGet(ctx)) }),
		"CensusTake":              read(func(ctx context.Context) error { return discard(st.CensusTake(ctx)) }),
		"PassCursorList":          read(func(ctx context.Context) error { return discard(st.PassCursorList(ctx, ledger.PassVerify, "", 2)) }),
		"PassCursorListAll":       read(func(ctx context.Context) error { return discard(st.PassCursorListAll(ctx, ledger.PassVerify)) }),
		"InventoryCurrent":        read(func(ctx context.Context) error { return discard2(st.InventoryCurrent(ctx)) }),
		"InventoryLatest":         read(func(ctx context.Context) error { return discard2(st.InventoryLatest(ctx)) }),
		"InventoryReports":        read(func(ctx context.Context) error { return discard(st.InventoryReports(ctx)) }),
		"InventoryGetMany":        read(func(ctx context.Context) error { return discard(st.InventoryGetMany(ctx, s.inventory, s.oldKeys)) }),
		"PhotoScanShard": read(func(ctx context.Context) error {
			return discard(st.PhotoScanShard(ctx, s.ids[0], id, s.ids[len(s.ids)-1], 500))
		}),
		"ObjectMoveShardBounds": read(func(ctx context.Context) error { return discard(st.ObjectMoveShardBounds(ctx, 8)) }),
		"ObjectMoveListCommittedRange": read(func(ctx context.Context) error {
			return discard(st.ObjectMoveListCommittedRange(ctx, s.newKeys[0], newKey, "users/~", 500))
		}),
		"ObjectMoveCommittedNewKeys": read(func(ctx context.Context) error { return discard(st.ObjectMoveCommittedNewKeys(ctx, s.newKeys)) }),
		"InventoryObjectPage": read(func(ctx context.Context) error {
			return discard(st.InventoryObjectPage(ctx, s.inventory, "uploaded/", oldKey, 1000))
		}),
		"NewSelector": read(func(ctx context.Context) error { return discard(st.NewSelector(ctx, nil)) }),
		"Selector.Scan": read(func(ctx context.Context) error {
			sc, err := st.NewSelector(ctx, &ledger.Selection{Owners: s.owners})
			if err != nil {
				return err
			}
			return discard(sc.Scan(ctx, st, "", 1000))
		}),
		"Selector.ScanRange": read(func(ctx context.Context) error {
			sc, err := st.NewSelector(ctx, nil)
			if err != nil {
				return err
			}
			return discard(sc.ScanRange(ctx, st, id, last, id, 1000))
		}),
		"Selector.Among": read(func(ctx context.Context) error {
			sc, err := st.NewSelector(ctx, nil)
			if err != nil {
				return err
			}
			return discard(sc.Among(ctx, st, s.ids))
		}),
		"Selector.Unreached": read(func(ctx context.Context) error {
			sc, err := st.NewSelector(ctx, nil)
			if err != nil {
				return err
			}
			return sc.Unreached(ctx, st, ledger.UnreachedQuery{RunID: s.runID, Lower: id, Upper: last, Page: 500}, func([]string) error { return nil })
		}),
		"PlanSessionOpen": read(func(ctx context.Context) error {
			ps, err := st.PlanSessionOpen(ctx)
			if err == nil {
				ps.Close()
			}
			return err
		}),
		"PlanSession.Analyze": read(func(ctx context.Context) error {
			ps, err := st.PlanSessionOpen(ctx)
			if err != nil {
				return err
			}
			defer ps.Close()
			return discard(ps.Analyze(ctx, ledger.PlanQuery{MultipartThreshold: 64 << 20, PartSize: 64 << 20, Examples: 3}))
		}),
		"PlanKeysBytewise": read(func(ctx context.Context) error { return discard(st.PlanKeysBytewise(ctx)) }),
		"PlanJobSample":    read(func(ctx context.Context) error { return discard(st.PlanJobSample(ctx, 1)) }),
		"PlanPhotosInRange": read(func(ctx context.Context) error {
			none := func(ledger.Photo) error { return nil }
			if err := st.PlanPhotosInRange(ctx, "a", "b", none); err != nil {
				return err
			}
			return st.PlanPhotosInRange(ctx, "f", "", none)
		}),
		"PlanSession.Split": read(func(ctx context.Context) error {
			ps, err := st.PlanSessionOpen(ctx)
			if err != nil {
				return err
			}
			defer ps.Close()
			return ps.Split(ctx)
		}),
		"PlanSession.BeginRange": read(func(ctx context.Context) error {
			ps, err := st.PlanSessionOpen(ctx)
			if err != nil {
				return err
			}
			defer ps.Close()
			if err := ps.Split(ctx); err != nil {
				return err
			}
			return ps.BeginRange(ctx, "a", "b", []ledger.PlanRef{{PhotoID: id, Class: ledger.PlanMigrate, Column: "original_key", Key: "uploaded/a.jpg", Job: "a"}},
				[]ledger.PlanJob{{PhotoID: id, Class: ledger.PlanMigrate, Job: "a"}})
		}),
		"PlanSession.SamplePhotos": read(func(ctx context.Context) error {
			ps, err := st.PlanSessionOpen(ctx)
			if err != nil {
				return err
			}
			defer ps.Close()
			return discard(ps.SamplePhotos(ctx, 10, nil))
		}),

		// Writes: each on its own rows, so one does not undo another.
		"PhotoMoveBeginAttempt": write(func(ctx context.Context) error {
			return discard(st.PhotoMoveBeginAttempt(ctx, s.ids[1], s.runID, "w1"))
		}),
		"PhotoMoveRelease":     write(func(ctx context.Context) error { return st.PhotoMoveRelease(ctx, s.ids[1], "w1") }),
		"PhotoMoveMarkDeleted": write(func(ctx context.Context) error { return st.PhotoMoveMarkDeleted(ctx, s.ids[2]) }),
		"PhotoMoveRecordEnqueued": write(func(ctx context.Context) error {
			return st.PhotoMoveRecordEnqueued(ctx, s.runID, []ledger.Photo{s.photo})
		}),
		"PhotoMoveArchive": write(func(ctx context.Context) error { return discard(st.PhotoMoveArchive(ctx, s.photo, s.runID)) }),
		"PhotoMoveSwap": write(func(ctx context.Context) error {
			return discard(st.PhotoMoveSwap(ctx, ledger.SwapInput{PhotoID: s.ids[3], RunID: s.runID, OwnerID: "1", JobID: s.jobs[3],
				Old: ledger.Keys{Original: "uploaded/x.jpg"}, New: ledger.Keys{Original: "users/1/raw/x/original.jpg"}}))
		}),
		"PhotoMoveCommitDerived": write(func(ctx context.Context) error {
			// With a move, so that commitObjects (and its check of the
			// moves' discards) is planned too.
			return discard(st.PhotoMoveCommitDerived(ctx, s.ids[4], s.runID, "1", s.jobs[4], []ledger.ObjectMove{
				{Kind: "metadata", OldKey: "uploaded/z.json", NewKey: "users/1/meta/z.json", Size: 1, ETag: `"m"`}}))
		}),
		"PhotoMoveRollBack": write(func(ctx context.Context) error {
			ms, err := st.PhotoMoveRollbackCandidates(ctx, s.ids[5], "", "", 1)
			if err != nil || len(ms) == 0 {
				return fmt.Errorf("no candidate: %w", err)
			}
			return discard(st.PhotoMoveRollBack(ctx, ms[0]))
		}),
		"PhotoMoveListLost": write(func(ctx context.Context) error { return discard(st.PhotoMoveListLost(ctx, hour, hour, 100)) }),
		"PhotoAssignOwner": write(func(ctx context.Context) error {
			return discard(st.PhotoAssignOwner(ctx, ledger.AssignInput{PhotoID: s.ids[6], OwnerID: s.owners[0], RunID: "assign-1", By: "t", Source: "t", Keys: s.photo.Keys}))
		}),
		"AssignmentMarkEnqueued": write(func(ctx context.Context) error { return st.AssignmentMarkEnqueued(ctx, s.ids[6:8]) }),
		"ObjectMoveRecordIntents": write(func(ctx context.Context) error {
			return discard(st.ObjectMoveRecordIntents(ctx, s.ids[7], s.jobs[7], []ledger.Intent{{Kind: "original", OldKey: "uploaded/y.jpg", NewKey: "users/1/raw/y/original.jpg"}}))
		}),
		"ObjectMoveRecordIntentsKeeping": write(func(ctx context.Context) error {
			return discard(st.ObjectMoveRecordIntentsKeeping(ctx, s.ids[7], s.jobs[7], []ledger.Intent{{Kind: "animation", OldKey: "animated/y/a_loop.mp4", NewKey: "users/1/animated/y/a_loop.mp4"}}, []string{"users/1/raw/y/original.jpg"}))
		}),
		"ObjectMoveRecordCopies": write(func(ctx context.Context) error {
			return st.ObjectMoveRecordCopies(ctx, s.ids[7], []ledger.ObjectMove{{Kind: "original", OldKey: "uploaded/y.jpg", NewKey: "users/1/raw/y/original.jpg", Size: 1, ETag: "e"}})
		}),
		"ObjectMovePinSource": write(func(ctx context.Context) error {
			return st.ObjectMovePinSource(ctx, s.ids[7], "users/1/raw/y/original.jpg", ledger.SourcePin{ETag: `"p"`, Size: 1})
		}),
		"ObjectMoveClaimDiscards": write(func(ctx context.Context) error {
			_, _, err := st.ObjectMoveClaimDiscards(ctx, []ledger.DiscardClaim{{NewKey: "users/1/raw/y/original.jpg", ETag: `"e"`}}, time.Minute)
			return err
		}),
		"ObjectMoveSettleDiscards": write(func(ctx context.Context) error {
			return st.ObjectMoveSettleDiscards(ctx, []ledger.DiscardClaim{{NewKey: "users/1/raw/y/original.jpg", Gen: 1}})
		}),
		"ObjectMoveMarkRestored":   write(func(ctx context.Context) error { return st.ObjectMoveMarkRestored(ctx, s.newKeys[len(s.newKeys)-1]) }),
		"ObjectMoveMarkNewDeleted": write(func(ctx context.Context) error { return st.ObjectMoveMarkNewDeleted(ctx, s.newKeys[len(s.newKeys)-1:]) }),
		"CleanupClaim": write(func(ctx context.Context) error {
			return discard(st.CleanupClaim(ctx, []ledger.Claim{{OldKey: oldKey, ETag: "e", Photos: []string{id}}}))
		}),
		"CleanupClearIntent": write(func(ctx context.Context) error { return st.CleanupClearIntent(ctx, []string{oldKey}) }),
		"CleanupMarkDeleted": write(func(ctx context.Context) error { return st.CleanupMarkDeleted(ctx, s.oldKeys[len(s.oldKeys)-1:]) }),
		"PurgeBegin": write(func(ctx context.Context) error {
			return st.PurgeBegin(ctx, s.ids[9], map[string]string{}, map[string]int64{})
		}),
		"PurgeFinish": write(func(ctx context.Context) error { return st.PurgeFinish(ctx, s.ids[9], nil, true) }),
		"AuditCompact": write(func(ctx context.Context) error {
			_, _, _, err := st.AuditCompact(ctx, time.Now(), last, 100)
			return err
		}),
		"FailureRecord": write(func(ctx context.Context) error {
			return st.FailureRecord(ctx, ledger.Failure{PhotoID: s.ids[10], RunID: s.runID, MessageID: "m1", Reason: "source_missing", Permanent: true, Error: "x"})
		}),
		"FailureMarkRedriven": write(func(ctx context.Context) error {
			return st.FailureMarkRedriven(ctx, []string{"m1"}, s.ids[10:11], time.Now())
		}),
		"FailureMarkAllRedriven": write(func(ctx context.Context) error { return st.FailureMarkAllRedriven(ctx, time.Now()) }),
		// In name order: forget the report, load it again (every file), and
		// begin it once more (the fast path: it is current).
		"InventoryForget": write(func(ctx context.Context) error { return st.InventoryForget(ctx) }),
		"InventoryLoadNextFile": write(func(ctx context.Context) error {
			r, err := st.InventoryReportBegin(ctx, planManifest)
			if err != nil {
				return err
			}
			return discard2(st.InventoryLoadNextFile(ctx, r, func(context.Context, ledger.InventoryFile) iter.Seq2[ledger.InventoryObject, error] {
				return func(yield func(ledger.InventoryObject, error) bool) {
					yield(ledger.InventoryObject{Key: oldKey, Size: 1, ETag: `"e"`, StorageClass: "STANDARD"}, nil)
				}
			}))
		}),
		"InventoryReportBegin": write(func(ctx context.Context) error { return discard(st.InventoryReportBegin(ctx, planManifest)) }),
		"RunStart": write(func(ctx context.Context) error {
			return discard2(st.RunStart(ctx, "", "run-plan", nil))
		}),
		"RunAbort": write(func(ctx context.Context) error {
			if _, _, err := st.RunStart(ctx, "run-abort-plan", "", nil); err != nil {
				return err
			}
			return discard(st.RunAbort(ctx, "run-abort-plan", "t"))
		}),
		"RunCreate":    write(func(ctx context.Context) error { return discard(st.RunCreate(ctx, "assign-plan", "assign", nil)) }),
		"RunAdvance":   write(func(ctx context.Context) error { return st.RunAdvance(ctx, "run-plan", id, ledger.RunCounts{}) }),
		"RunAddCounts": write(func(ctx context.Context) error { return st.RunAddCounts(ctx, "assign-plan", "", ledger.RunCounts{}) }),
		"RunFinish":    write(func(ctx context.Context) error { return st.RunFinish(ctx, "run-plan") }),
		"RunShardJoin": write(func(ctx context.Context) error { return discard(st.RunShardJoin(ctx, s.runID, 0, 2)) }),
		"RunShardAdvance": write(func(ctx context.Context) error {
			return st.RunShardAdvance(ctx, s.runID, 0, id, ledger.RunCounts{})
		}),
		"RunShardFinish":      write(func(ctx context.Context) error { return discard(st.RunShardFinish(ctx, s.runID, 0)) }),
		"ControlSetPaused":    write(func(ctx context.Context) error { return st.ControlSetPaused(ctx, false, "t") }),
		"ControlSetRateLimit": write(func(ctx context.Context) error { return st.ControlSetRateLimit(ctx, nil, "t") }),
		"ControlQueueEmpty":   write(func(ctx context.Context) error { return discard(st.ControlQueueEmpty(ctx, true)) }),
		"WorkerHeartbeat": write(func(ctx context.Context) error {
			return discard(st.WorkerHeartbeat(ctx, ledger.WorkerBeat{WorkerID: "w1"}, 10*time.Second))
		}),
		"WorkerLeave": write(func(ctx context.Context) error { return st.WorkerLeave(ctx, "w1") }),
		"S3CapabilitiesSave": write(func(ctx context.Context) error {
			return st.S3CapabilitiesSave(ctx, ledger.S3Capabilities{Bucket: "plan"})
		}),
		"CounterFold":        write(func(ctx context.Context) error { return discard(st.CounterFold(ctx)) }),
		"CensusRecordRunEnd": write(func(ctx context.Context) error { return st.CensusRecordRunEnd(ctx, s.runID) }),
		"PassCursorJoin":     write(func(ctx context.Context) error { return discard(st.PassCursorJoin(ctx, ledger.PassVerify, "", 0, 2)) }),
		"PassCursorAdvance": write(func(ctx context.Context) error {
			return st.PassCursorAdvance(ctx, ledger.PassCursor{Pass: ledger.PassVerify, Shard: 0, Shards: 2}, id, map[string]int{})
		}),
		"PassCursorFinish": write(func(ctx context.Context) error {
			return st.PassCursorFinish(ctx, ledger.PassCursor{Pass: ledger.PassVerify, Shard: 0, Shards: 2}, map[string]int{})
		}),
		"PassCursorRestart": write(func(ctx context.Context) error {
			return discard(st.PassCursorRestart(ctx, ledger.PassCursor{Pass: ledger.PassVerify, Shard: 0, Shards: 2}))
		}),
		"PassBoundsFix": write(func(ctx context.Context) error {
			return discard(st.PassBoundsFix(ctx, ledger.PassVerify, "", 2, func(context.Context) (any, error) { return []string{"m"}, nil }))
		}),
		"PassLeaseTake": write(func(ctx context.Context) error {
			c, err := st.PassCursorJoin(ctx, ledger.PassCleanup, "plan", 0, 2)
			if err != nil {
				return err
			}
			return discard(st.PassLeaseTake(ctx, c, "plan-holder", time.Minute))
		}),
		"PassLeaseRenew": write(func(ctx context.Context) error {
			// After PassLeaseRelease and PassCursorReset (name order): the
			// shard's row again, and its lease held, first.
			c, err := st.PassCursorJoin(ctx, ledger.PassCleanup, "plan", 0, 2)
			if err != nil {
				return err
			}
			if _, err := st.PassLeaseTake(ctx, c, "plan-holder", time.Minute); err != nil {
				return err
			}
			return st.PassLeaseRenew(ctx, c, "plan-holder", time.Minute)
		}),
		"PassLeaseHold": write(func(ctx context.Context) error {
			// Its own shard (1/2): the take, and the release at the end.
			c, err := st.PassCursorJoin(ctx, ledger.PassVerify, "plan", 1, 2)
			if err != nil {
				return err
			}
			_, lease, err := st.PassLeaseHold(ctx, c, "plan-holder", time.Minute)
			if err != nil {
				return err
			}
			lease.Release()
			return nil
		}),
		"PassLeaseBreak": write(func(ctx context.Context) error {
			return discard(st.PassLeaseBreak(ctx, ledger.PassCursor{Pass: ledger.PassCleanup, Scope: "plan", Shard: 0, Shards: 2}, "plan-holder"))
		}),
		"PassLeaseRelease": write(func(ctx context.Context) error {
			return st.PassLeaseRelease(ctx, ledger.PassCursor{Pass: ledger.PassCleanup, Scope: "plan", Shard: 0, Shards: 2}, "plan-holder")
		}),
		"PassCursorReset": write(func(ctx context.Context) error { return st.PassCursorReset(ctx, ledger.PassVerify, "", 2) }),
	}
}

var errStopEach = fmt.Errorf("stop after the first row")

func discard2[T any](_ T, _ bool, err error) error { return err }

func discard3[A, B any](_ A, _ B, err error) error { return err }

// The application team's indexes in docs/guarantees.md are exactly
// ledger.ApplicationIndexes.
func TestTheDocsListTheApplicationsIndexes(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../../docs/guarantees.md")
	require.NoError(t, err)
	for _, idx := range ledger.ApplicationIndexes {
		require.Contains(t, string(doc), idx+";", "docs/guarantees.md must list the index")
	}
	require.Equal(t, len(ledger.ApplicationIndexes), strings.Count(string(doc), "CREATE INDEX CONCURRENTLY IF NOT EXISTS photos_"),
		"docs/guarantees.md lists an index ledger.ApplicationIndexes does not have")
}
