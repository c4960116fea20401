package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/invtest"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	s3inv "github.com/keymigrate/keymigrate/internal/pipeline/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// runErr runs a binary that must fail and returns its standard error.
func (b *testBundle) runErr(name string, args ...string) string {
	b.t.Helper()
	c := b.cmd(name, args...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	require.Error(b.t, err, "%s %v must fail\nstdout:\n%s", name, args, stdout.String())
	return stderr.String()
}

// The operator's path: load the bucket's report (a line per data file),
// again (nothing to do), see it in status, plan from it; a report of another
// bucket is refused, naming both.
func TestInventoryLoadStatusAndPlan(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	b.env.Seed(t, seed.Options{Photos: 30, Seed: 5})
	dir := t.TempDir()
	created := time.Now().Add(-26 * time.Hour).UTC().Truncate(time.Minute)
	key, n, err := invtest.WriteFromListing(ctx, b.env.S3, b.env.Name, nil, s3inv.NewDir(dir),
		s3inv.Config{Format: s3inv.FormatCSV, DestinationBucket: "inv", ConfigID: "daily", ObjectsPerFile: 20, CreationTime: created})
	require.NoError(t, err)
	loc := filepath.Join(dir, filepath.Dir(filepath.Dir(key))) // the configuration's directory: its newest report
	files := (n + 19) / 20

	out := b.run("migratectl", "inventory", "load", "--inventory", loc, "--workers", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, files+2, out)
	require.Contains(t, lines[0], fmt.Sprintf("loading the report of s3://%s created %s (1d2h old), CSV, %d data files (0 loaded before)", b.env.Name, created.Format(time.RFC3339), files))
	require.Contains(t, lines[1], "files loaded")
	require.Contains(t, lines[files], fmt.Sprintf("%d/%d files loaded, %d objects", files, files, n))
	require.Contains(t, lines[files+1], fmt.Sprintf("loaded the report of s3://%s created %s (1d2h old)", b.env.Name, created.Format(time.RFC3339)))
	require.Contains(t, b.run("migratectl", "inventory", "load", "--inventory", loc), "is loaded already")

	status := b.run("migratectl", "inventory", "status")
	require.Contains(t, status, fmt.Sprintf("report of s3://%s created %s (1d2h old), CSV", b.env.Name, created.Format(time.RFC3339)))
	require.Contains(t, status, fmt.Sprintf("loaded: %d of %d data files, %d objects", files, files, n))

	plan := b.run("migratectl", "plan", "--inventory", loc, "--quiet")
	require.Contains(t, plan, "read from the S3 Inventory report of "+created.Format(time.RFC3339))
	require.Contains(t, plan, "no LIST request")

	other := t.TempDir()
	w, err := s3inv.NewWriter(s3inv.NewDir(other), s3inv.Config{Format: s3inv.FormatParquet, SourceBucket: "photos-prod", DestinationBucket: "inv", ConfigID: "daily", Fields: invtest.ListingFields})
	require.NoError(t, err)
	require.NoError(t, w.Add(ctx, s3inv.Object{Key: "uploaded/a.jpg", Size: 1, ETag: "aa", StorageClass: "STANDARD"}))
	_, err = w.Close(ctx)
	require.NoError(t, err)
	msg := b.runErr("migratectl", "inventory", "load", "--inventory", filepath.Join(other, w.ConfigKey()))
	require.Contains(t, msg, `is a report of bucket "photos-prod", but this migration's bucket is "`+b.env.Name+`"`)
}

// A load SIGKILLed while its workers are in the middle of data files is run
// again and ends with exactly the report's objects.
func TestInventoryLoadKilledMidwayIsRunAgain(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	dir := t.TempDir()
	w, err := s3inv.NewWriter(s3inv.NewDir(dir), s3inv.Config{Format: s3inv.FormatCSV, SourceBucket: b.env.Name, DestinationBucket: "inv", ConfigID: "daily",
		Fields: invtest.ListingFields, ObjectsPerFile: 4000})
	require.NoError(t, err)
	const objects = 120_000
	for i := range objects {
		require.NoError(t, w.Add(ctx, s3inv.Object{Key: fmt.Sprintf("uploaded/%08d.jpg", i), Size: int64(i), ETag: fmt.Sprintf("%032x", i), StorageClass: "STANDARD",
			LastModified: time.Unix(1_700_000_000, 0)}))
	}
	_, err = w.Close(ctx)
	require.NoError(t, err)
	loc := filepath.Join(dir, w.ConfigKey())

	c := b.cmd("migratectl", "inventory", "load", "--inventory", loc, "--workers", "3")
	stdout, err := c.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, c.Start())
	lines := bufio.NewReader(stdout)
	begun, err := lines.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, begun, "loading the report")
	first, err := lines.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, first, "files loaded")
	require.NoError(t, c.Process.Kill()) // two workers are in the middle of a file
	_ = c.Wait()
	var files, rows int
	for _, f := range ledgertest.InventoryFiles(t, b.env.Store) {
		if f.LoadedAt != nil {
			files++
		}
		rows += int(f.Rows)
	}
	require.Less(t, files, objects/4000, "killed before the end")
	require.Equal(t, files*4000, rows)

	out := b.run("migratectl", "inventory", "load", "--inventory", loc, "--workers", "3")
	t.Logf("the load run again:\n%s", out)
	require.Contains(t, out, fmt.Sprintf("30 files, 120,000 objects; this process loaded %d files", objects/4000-files))
	require.Equal(t, objects, ledgertest.Rows(t, b.env.Store, ledgertest.TallyInventoryObjects))
}
