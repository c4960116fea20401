package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// synthReport is a report made up in memory: files of records.
type synthReport struct {
	m       ledger.InventoryManifest
	records [][]ledger.InventoryObject
}

// newSynthReport makes a report of files × perFile objects whose keys start
// with tag (two reports with other tags share no key).
func newSynthReport(tag string, created time.Time, files, perFile int) *synthReport {
	r := &synthReport{m: ledger.InventoryManifest{Location: "s3://inv/" + tag + "/manifest.json", SourceBucket: "photos", Format: "CSV", CreatedAt: created}}
	for i := range files {
		r.m.Files = append(r.m.Files, ledger.InventoryFile{Key: fmt.Sprintf("%s/data/%d.csv.gz", tag, i), Size: int64(100 + i), MD5: fmt.Sprintf("%032x", i)})
		var objs []ledger.InventoryObject
		for j := range perFile {
			objs = append(objs, ledger.InventoryObject{
				Key: fmt.Sprintf("uploaded/%s-%03d-%04d.jpg", tag, i, j), Size: int64(j), ETag: fmt.Sprintf(`"%032x"`, i*perFile+j),
				LastModified: created.Add(-time.Duration(j) * time.Second), StorageClass: "STANDARD",
			})
		}
		r.records = append(r.records, objs)
	}
	return r
}

func (r *synthReport) rows() int64 {
	var n int64
	for _, f := range r.records {
		n += int64(len(f))
	}
	return n
}

// read streams a file's records; hook, if set, runs before each record.
func (r *synthReport) read(hook func(f ledger.InventoryFile, i int) error) ledger.InventoryReadFunc {
	return func(ctx context.Context, f ledger.InventoryFile) iter.Seq2[ledger.InventoryObject, error] {
		return func(yield func(ledger.InventoryObject, error) bool) {
			for i, o := range r.records[f.Index] {
				if hook != nil {
					if err := hook(f, i); err != nil {
						yield(ledger.InventoryObject{}, err)
						return
					}
				}
				if err := ctx.Err(); err != nil {
					yield(ledger.InventoryObject{}, err)
					return
				}
				if !yield(o, nil) {
					return
				}
			}
		}
	}
}

// loadAll runs InventoryLoadNextFile until the report is loaded and returns
// the files it loaded.
func loadAll(t *testing.T, st *ledger.Store, rep ledger.InventoryReport, read ledger.InventoryReadFunc) []ledger.InventoryFileLoad {
	t.Helper()
	var out []ledger.InventoryFileLoad
	for {
		l, ok, err := st.InventoryLoadNextFile(context.Background(), rep, read)
		require.NoError(t, err)
		if !ok {
			return out
		}
		out = append(out, l)
	}
}

// requireHolds checks that inventory_objects holds exactly the objects of r,
// and that the ledger says so.
func requireHolds(t *testing.T, st *ledger.Store, r *synthReport) ledger.InventoryReport {
	t.Helper()
	ctx := context.Background()
	var n, distinct int64
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT key) FROM keymigrate.inventory_objects`).Scan(&n, &distinct))
	require.Equal(t, r.rows(), n, "rows exactly the report's")
	require.Equal(t, n, distinct, "no key twice")
	var want []string
	for _, f := range r.records {
		for _, o := range f {
			want = append(want, o.Key)
		}
	}
	var inTable int64
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.inventory_objects WHERE key = ANY($1)`, want).Scan(&inTable))
	require.Equal(t, r.rows(), inTable, "every key of the report, and no other")
	latest, ok, err := st.InventoryLatest(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, len(r.m.Files), latest.Files)
	require.Equal(t, latest.Files, latest.LoadedFiles)
	require.Equal(t, r.rows(), latest.Rows)
	require.NotNil(t, latest.LoadedAt)
	require.True(t, latest.CreatedAt.Equal(r.m.CreatedAt))
	return latest
}

func newInventoryStore(t *testing.T) *ledger.Store {
	t.Helper()
	t.Parallel()
	return testenv.New(t, testenv.Options{}).Store
}

var day = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// A loader killed in the middle of a file (its context cancelled inside the
// COPY) leaves nothing of that file; the next load redoes it, and the table
// ends with exactly the report's rows.
func TestInventoryLoadResumesAfterAKillMidFile(t *testing.T) {
	st := newInventoryStore(t)
	ctx := context.Background()
	r := newSynthReport("a", day, 3, 400)
	rep, err := st.InventoryReportBegin(ctx, r.m)
	require.NoError(t, err)
	require.Equal(t, 3, rep.Files)
	require.Zero(t, rep.LoadedFiles)
	_, ok, err := st.InventoryLatest(ctx)
	require.NoError(t, err)
	require.False(t, ok, "not loaded yet")

	first, ok, err := st.InventoryLoadNextFile(ctx, rep, r.read(nil))
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 400, first.Rows)

	kctx, kill := context.WithCancel(ctx)
	_, _, err = st.InventoryLoadNextFile(kctx, rep, r.read(func(f ledger.InventoryFile, i int) error {
		if i == 250 {
			kill() // the process dies with 250 records of this file sent
		}
		return nil
	}))
	require.ErrorIs(t, err, context.Canceled)
	var n int64
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.inventory_objects`).Scan(&n))
	require.EqualValues(t, 400, n, "the killed file left no row")
	cur, ok, err := st.InventoryCurrent(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 1, cur.LoadedFiles, "and is not marked loaded")
	require.Nil(t, cur.LoadedAt)

	// Loaded again by another Begin (a rerun of the command): the same report.
	again, err := st.InventoryReportBegin(ctx, r.m)
	require.NoError(t, err)
	require.Equal(t, rep.ID, again.ID)
	rest := loadAll(t, st, again, r.read(nil))
	var redone []int
	for _, l := range rest {
		redone = append(redone, l.File.Index)
	}
	// The killed connection may still hold file 1 for a moment (its
	// backend has not yet seen the cancellation): the loader takes file 2,
	// then waits for file 1.
	slices.Sort(redone)
	require.Equal(t, []int{1, 2}, redone, "the killed file is redone")
	requireHolds(t, st, r)
}

// Two loaders (two machines: separate connection pools) load one report at
// once: every file is loaded once, by one of them, and both return only when
// the whole report is loaded.
func TestInventoryTwoLoadersLoadEveryRowOnce(t *testing.T) {
	st := newInventoryStore(t)
	ctx := context.Background()
	other, err := ledger.Open(ctx, st.Pool().Config().ConnString(), 4)
	require.NoError(t, err)
	t.Cleanup(other.Close)

	r := newSynthReport("b", day, 10, 300)
	var loads [2][]ledger.InventoryFileLoad
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*ledger.Store{st, other} {
		wg.Go(func() {
			rep, err := s.InventoryReportBegin(ctx, r.m)
			if err != nil {
				errs[i] = err
				return
			}
			slow := r.read(func(ledger.InventoryFile, int) error {
				time.Sleep(20 * time.Microsecond) // long enough for the other to claim files meanwhile
				return nil
			})
			for {
				l, ok, err := s.InventoryLoadNextFile(ctx, rep, slow)
				if err != nil || !ok {
					errs[i] = err
					return
				}
				loads[i] = append(loads[i], l)
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	var files []int
	var rows int64
	for _, ls := range loads {
		require.NotEmpty(t, ls, "each loader loaded files")
		for _, l := range ls {
			files = append(files, l.File.Index)
			rows += l.Rows
		}
	}
	slices.Sort(files)
	require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, files, "every file once")
	require.Equal(t, r.rows(), rows)
	requireHolds(t, st, r)
	var loaders int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(DISTINCT loader) FROM keymigrate.inventory_files WHERE loaded_at IS NOT NULL`).Scan(&loaders))
	require.Equal(t, 1, loaders, "one host and process here (both stores are in this test)")
}

// A new report replaces the old one's objects, also when a loader of the old
// one is in the middle of a file: its rows do not leak into the new report,
// and it stops with ErrInventoryReplaced. Readers holding the old report are
// told, never answered from the new one. An older report does not replace a
// newer one unless the current one is forgotten first.
func TestInventoryNewReportReplacesTheOld(t *testing.T) {
	st := newInventoryStore(t)
	ctx := context.Background()
	a := newSynthReport("a", day, 2, 200)
	repA, err := st.InventoryReportBegin(ctx, a.m)
	require.NoError(t, err)
	loadAll(t, st, repA, a.read(nil))
	requireHolds(t, st, a)
	got, err := st.InventoryGetMany(ctx, repA, []string{a.records[0][0].Key})
	require.NoError(t, err)
	require.Len(t, got, 1)

	// A third report of a's is being loaded when b's begins.
	a2 := newSynthReport("a2", day.Add(time.Hour), 2, 200)
	repA2, err := st.InventoryReportBegin(ctx, a2.m)
	require.NoError(t, err)
	_, err = st.InventoryGetMany(ctx, repA, []string{a.records[0][0].Key})
	require.ErrorIs(t, err, ledger.ErrInventoryReplaced, "a reader of a replaced report is told")
	// Its loader has claimed a file and is about to copy it.
	inFile, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	releaseLoader := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseLoader) // before the store closes, should the test fail
	ledger.SetInventoryBeforeCopy(st, func(f ledger.InventoryFile) {
		if f.Key == a2.m.Files[0].Key {
			close(inFile)
			<-release
		}
	})
	loaderDone := make(chan error, 1)
	go func() {
		_, _, err := st.InventoryLoadNextFile(ctx, repA2, a2.read(nil))
		loaderDone <- err
	}()
	<-inFile
	b := newSynthReport("b", day.Add(24*time.Hour), 3, 150)
	begun := make(chan error, 1)
	var repB ledger.InventoryReport
	go func() {
		var err error
		repB, err = st.InventoryReportBegin(ctx, b.m)
		begun <- err
	}()
	select {
	case err := <-begun:
		t.Fatalf("the new report began while a file of the old one was being loaded: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	releaseLoader()
	require.NoError(t, <-loaderDone, "the old file finishes")
	require.NoError(t, <-begun)
	_, _, err = st.InventoryLoadNextFile(ctx, repA2, a2.read(nil))
	require.ErrorIs(t, err, ledger.ErrInventoryReplaced)
	var n int64
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.inventory_objects`).Scan(&n))
	require.Zero(t, n, "the old report's objects are gone")
	_, ok, err := st.InventoryLatest(ctx)
	require.NoError(t, err)
	require.False(t, ok, "nothing is loaded while the new report loads")
	_, err = st.InventoryGetMany(ctx, repB, []string{b.records[0][0].Key})
	require.ErrorIs(t, err, ledger.ErrInventoryNotLoaded)
	loadAll(t, st, repB, b.read(nil))
	latest := requireHolds(t, st, b)
	require.Equal(t, repB.ID, latest.ID)

	_, err = st.InventoryReportBegin(ctx, a.m)
	var older *ledger.InventoryOlderError
	require.ErrorAs(t, err, &older)
	requireHolds(t, st, b)
	require.NoError(t, st.InventoryForget(ctx))
	_, ok, err = st.InventoryLatest(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	repA, err = st.InventoryReportBegin(ctx, a.m)
	require.NoError(t, err)
	loadAll(t, st, repA, a.read(nil))
	requireHolds(t, st, a)
	all, err := st.InventoryReports(ctx)
	require.NoError(t, err)
	require.Len(t, all, 3, "a (loaded again), a2 and b")
}

// crash does to the unlogged tables what Postgres's crash recovery does:
// empties them (the shared server here cannot be crashed by a test).
func crash(t *testing.T, st *ledger.Store) {
	t.Helper()
	_, err := st.Pool().Exec(context.Background(), `TRUNCATE keymigrate.inventory_objects, keymigrate.inventory_loaded`)
	require.NoError(t, err)
}

// A crash empties the unlogged objects table while the report's files say
// loaded: the ledger notices, readers are told, and loading again refills it,
// after a load or in the middle of one.
func TestInventoryEmptiedByACrashIsDetectedAndReloaded(t *testing.T) {
	st := newInventoryStore(t)
	ctx := context.Background()
	r := newSynthReport("c", day, 3, 100)
	rep, err := st.InventoryReportBegin(ctx, r.m)
	require.NoError(t, err)
	loadAll(t, st, rep, r.read(nil))
	rep = requireHolds(t, st, r)

	crash(t, st)
	_, ok, err := st.InventoryLatest(ctx)
	require.NoError(t, err)
	require.False(t, ok, "an emptied report is not loaded")
	cur, ok, err := st.InventoryCurrent(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, cur.Emptied)
	require.Zero(t, cur.LoadedFiles)
	require.Zero(t, cur.Rows)
	_, err = st.InventoryGetMany(ctx, rep, []string{r.records[0][0].Key})
	require.ErrorIs(t, err, ledger.ErrInventoryEmptied)
	_, err = st.InventoryObjectPage(ctx, rep, "uploaded/", "", 10)
	require.ErrorIs(t, err, ledger.ErrInventoryEmptied)

	again, err := st.InventoryReportBegin(ctx, r.m)
	require.NoError(t, err)
	require.Equal(t, rep.ID, again.ID)
	require.Zero(t, again.LoadedFiles, "every file is to be loaded again")
	require.Len(t, loadAll(t, st, again, r.read(nil)), 3)
	requireHolds(t, st, r)

	// In the middle of a load: one file in, the crash, and the loaders go on
	// (without a new Begin).
	r2 := newSynthReport("d", day.Add(time.Hour), 3, 100)
	rep2, err := st.InventoryReportBegin(ctx, r2.m)
	require.NoError(t, err)
	_, ok, err = st.InventoryLoadNextFile(ctx, rep2, r2.read(nil))
	require.NoError(t, err)
	require.True(t, ok)
	crash(t, st)
	require.Len(t, loadAll(t, st, rep2, r2.read(nil)), 3, "the file loaded before the crash is loaded again")
	requireHolds(t, st, r2)
}

// InventoryGetMany finds keys by index, with every field as loaded (the ETag
// in the S3 API's form), and InventoryObjectPage reads a prefix in byte
// order, page by page, whatever its characters.
func TestInventoryGetManyAndPages(t *testing.T) {
	st := newInventoryStore(t)
	ctx := context.Background()
	keys := []string{
		"uploaded/", "uploaded/\x01ctl.jpg", "uploaded/ space.jpg", "uploaded/%pct", "uploaded/_under", "uploaded/0abc.jpg",
		"uploaded/A.jpg", "uploaded/a.jpg", "uploaded/z", "uploaded/~", "uploaded/~~", "uploaded/\x7fdel", "uploaded/é.jpg",
		"uploaded/ê", "uploaded/日本.jpg", "uploaded/\U0010FFFF", "uploaded/\U0010FFFFx", "uploadee/next", "uploadec/prev",
		"meta/é", "meta/éa", "meta/ê", "meta/\u00ff", "users/1/raw/2/original.jpg",
	}
	r := &synthReport{m: ledger.InventoryManifest{Location: "/tmp/inv/manifest.json", SourceBucket: "photos", Format: "Parquet", CreatedAt: day,
		Files: []ledger.InventoryFile{{Key: "x.parquet", Size: 1, MD5: "00"}}}}
	var objs []ledger.InventoryObject
	for i, k := range keys {
		objs = append(objs, ledger.InventoryObject{Key: k, Size: int64(i), ETag: fmt.Sprintf("%032x-2", i), StorageClass: "GLACIER", Multipart: true})
	}
	objs[0].ETag, objs[0].LastModified, objs[0].EncryptionStatus, objs[0].Multipart = `"quoted"`, day.Add(-time.Hour), "SSE-KMS", false
	r.records = [][]ledger.InventoryObject{objs}
	rep, err := st.InventoryReportBegin(ctx, r.m)
	require.NoError(t, err)
	_, err = st.InventoryGetMany(ctx, rep, keys)
	require.ErrorIs(t, err, ledger.ErrInventoryNotLoaded)
	loadAll(t, st, rep, r.read(nil))
	rep = requireHolds(t, st, r)

	got, err := st.InventoryGetMany(ctx, rep, []string{keys[0], keys[5], "uploaded/absent", keys[15]})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, ledger.InventoryObject{Key: keys[0], Size: 0, ETag: `"quoted"`, LastModified: day.Add(-time.Hour), StorageClass: "GLACIER", EncryptionStatus: "SSE-KMS"}, got[keys[0]])
	require.Equal(t, ledger.InventoryObject{Key: keys[5], Size: 5, ETag: fmt.Sprintf(`"%032x-2"`, 5), StorageClass: "GLACIER", Multipart: true}, got[keys[5]])
	require.Contains(t, got, keys[15])

	for _, prefix := range []string{"uploaded/", "uploaded/~", "uploaded/\U0010FFFF", "meta/é", "meta/", "", "uploaded/%", "uploaded/_"} {
		var want []string
		for _, k := range keys {
			if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
				want = append(want, k)
			}
		}
		slices.Sort(want) // Go compares strings bytewise, as S3 lists
		for _, limit := range []int{1, 3, 100} {
			var seen []string
			after := ""
			for {
				page, err := st.InventoryObjectPage(ctx, rep, prefix, after, limit)
				require.NoError(t, err)
				for _, o := range page {
					seen = append(seen, o.Key)
				}
				if len(page) < limit {
					break
				}
				after = page[len(page)-1].Key
			}
			require.Equal(t, want, seen, "prefix %q, pages of %d", prefix, limit)
		}
	}
	page, err := st.InventoryObjectPage(ctx, rep, "uploaded/", "uploaded/z", 2)
	require.NoError(t, err)
	require.Equal(t, []string{"uploaded/~", "uploaded/~~"}, []string{page[0].Key, page[1].Key}, "after is exclusive")
}
