package inventory_test

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/invtest"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	opsinv "github.com/keymigrate/keymigrate/internal/ops/inventory"
	s3inv "github.com/keymigrate/keymigrate/internal/pipeline/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// measureEnv turns the measurement on (it takes about two minutes and writes
// a few hundred MB): KEYMIGRATE_INVENTORY_LOAD_MEASURE=1, optionally
// KEYMIGRATE_INVENTORY_LOAD_OBJECTS (default 1,000,000) and
// KEYMIGRATE_INVENTORY_LOAD_WORKERS (default 2).
const measureEnv = "KEYMIGRATE_INVENTORY_LOAD_MEASURE"

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func uuidAt(i, salt int) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	binary.LittleEndian.PutUint64(b[8:], uint64(salt))
	h := md5.Sum(b[:])
	s := hex.EncodeToString(h[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// legacyObjects makes n objects in the proportions of a legacy photo bucket
// (docs/scale-harness.md): per photo an original, a restore (80%), a
// thumbnail (85%), metadata (30%), animations (0.4), UUID job ids.
func legacyObjects(n int) []s3inv.Object {
	rng := rand.New(rand.NewPCG(1, 2))
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	out := make([]s3inv.Object, 0, n)
	add := func(key string) {
		if len(out) == n {
			return
		}
		sum := md5.Sum([]byte(key))
		etag := hex.EncodeToString(sum[:])
		size := 1000 + rng.Int64N(4<<20)
		mp := false
		if rng.IntN(100) == 0 {
			etag, size, mp = etag+"-"+strconv.Itoa(2+rng.IntN(8)), 16<<20+rng.Int64N(64<<20), true
		}
		class := "STANDARD"
		if rng.IntN(10) == 0 {
			class = "STANDARD_IA"
		}
		out = append(out, s3inv.Object{Key: key, Size: size, ETag: etag, StorageClass: class, IsMultipartUploaded: mp,
			LastModified: at.Add(time.Duration(rng.Int64N(365*24)) * time.Hour), EncryptionStatus: "SSE-S3"})
	}
	for i := 0; len(out) < n; i++ {
		job := uuidAt(i, 0)
		add("uploaded/" + job + ".jpg")
		if rng.IntN(100) < 80 {
			add("restored/" + job + "/" + uuidAt(i, 1) + ".png")
		}
		if rng.IntN(100) < 85 {
			add("thumbnails/" + job + ".jpg")
		}
		if rng.IntN(100) < 30 {
			add("meta/" + job + ".json")
		}
		for k := range 2 {
			if rng.IntN(100) < 20 {
				add(fmt.Sprintf("animated/%s/%s_%d.mp4", job, uuidAt(i, 2+k), k))
			}
		}
	}
	return out
}

// TestMeasureInventoryLoad measures the load of an n-object report (CSV and
// Parquet, 100,000 objects a data file, in key order; and CSV in random
// order) into Postgres on this machine: objects/s, the reader's own rate, and
// the table's and its index's bytes per object. The figures are in
// docs/inventory.md.
func TestMeasureInventoryLoad(t *testing.T) {
	if os.Getenv(measureEnv) == "" {
		t.Skip("a measurement: " + measureEnv + "=1")
	}
	n := envInt("KEYMIGRATE_INVENTORY_LOAD_OBJECTS", 1_000_000)
	workers := envInt("KEYMIGRATE_INVENTORY_LOAD_WORKERS", 2)
	ctx := context.Background()
	objs := legacyObjects(n)
	var keyBytes int
	for _, o := range objs {
		keyBytes += len(o.Key)
	}
	sorted := slices.Clone(objs)
	slices.SortFunc(sorted, func(a, b s3inv.Object) int {
		if a.Key < b.Key {
			return -1
		}
		return 1
	})
	t.Logf("%d objects, mean key %.1f bytes, %d workers", n, float64(keyBytes)/float64(n), workers)
	for _, c := range []struct {
		name   string
		format s3inv.Format
		objs   []s3inv.Object
	}{{"csv-key-order", s3inv.FormatCSV, sorted}, {"parquet-key-order", s3inv.FormatParquet, sorted}, {"csv-random-order", s3inv.FormatCSV, objs}} {
		env := testenv.New(t, testenv.Options{})
		dir := t.TempDir()
		w, err := s3inv.NewWriter(s3inv.NewDir(dir), s3inv.Config{Format: c.format, SourceBucket: env.Name, DestinationBucket: "inv", ConfigID: "m",
			Fields: invtest.ListingFields | s3inv.FieldEncryptionStatus, ObjectsPerFile: 100_000})
		require.NoError(t, err)
		for _, o := range c.objs {
			require.NoError(t, w.Add(ctx, o))
		}
		key, err := w.Close(ctx)
		require.NoError(t, err)
		var dataBytes int64
		for _, f := range w.Files() {
			dataBytes += f.Size
		}
		loc := filepath.Join(dir, key)

		// The reader alone, one goroutine per worker, for comparison.
		r, _, err := opsinv.Open(ctx, nil, loc, env.Name, "")
		require.NoError(t, err)
		start := time.Now()
		files := r.Files()
		errs := make(chan error, workers)
		next := make(chan s3inv.File, len(files))
		for _, f := range files {
			next <- f
		}
		close(next)
		for range workers {
			go func() {
				for f := range next {
					if err := r.ReadFile(ctx, f, func(s3inv.Object) error { return nil }); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range workers {
			require.NoError(t, <-errs)
		}
		readSecs := time.Since(start).Seconds()

		start = time.Now()
		res, err := opsinv.Load(ctx, env.Store, nil, loc, opsinv.Options{Bucket: env.Name, Workers: workers})
		require.NoError(t, err)
		loadSecs := time.Since(start).Seconds()
		require.EqualValues(t, n, res.Report.Rows)

		heap, index, total := ledgertest.InventoryObjectsSize(t, env.Store)

		// What plan does with it: every object, in pages of 5,000 (one
		// reader); and what verify and cleanup do: 1,000 keys a lookup.
		start = time.Now()
		read, after := 0, ""
		for {
			page, err := env.Store.InventoryObjectPage(ctx, res.Report, "", after, 5000)
			require.NoError(t, err)
			read += len(page)
			if len(page) < 5000 {
				break
			}
			after = page[len(page)-1].Key
		}
		require.Equal(t, n, read)
		pageSecs := time.Since(start).Seconds()
		start = time.Now()
		lookups := 0
		rng := rand.New(rand.NewPCG(3, 4))
		for range 100 {
			keys := make([]string, 1000)
			for i := range keys {
				keys[i] = objs[rng.IntN(n)].Key
			}
			got, err := env.Store.InventoryGetMany(ctx, res.Report, keys)
			require.NoError(t, err)
			require.NotEmpty(t, got)
			lookups += len(keys)
		}
		getSecs := time.Since(start).Seconds()

		t.Logf("%s: %d data files, %.1f MiB; reader alone %.1fs (%.0f objects/s); load %.1fs (%.0f objects/s); table %.1f + index %.1f = %.1f bytes/object (total with TOAST and maps %.1f); "+
			"keyset pages of 5,000: %.0f objects/s; lookups of 1,000 random keys: %.0f keys/s",
			c.name, len(files), float64(dataBytes)/(1<<20), readSecs, float64(n)/readSecs, loadSecs, float64(n)/loadSecs,
			float64(heap)/float64(n), float64(index)/float64(n), float64(heap+index)/float64(n), float64(total)/float64(n),
			float64(read)/pageSecs, float64(lookups)/getSecs)
	}
}
