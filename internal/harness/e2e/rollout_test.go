package e2e_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// runAll runs a binary and returns its stdout, its stderr and its exit code.
func (b *testBundle) runAll(name string, args ...string) (string, string, int) {
	b.t.Helper()
	c := b.cmd(name, args...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	require.NoError(b.t, err)
	return stdout.String(), stderr.String(), 0
}

func (b *testBundle) file(name, body string) string {
	b.t.Helper()
	p := filepath.Join(b.t.TempDir(), name)
	require.NoError(b.t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// A staged rollout through the binaries: plan, a first stage of one owner's
// photos, its status, verify and report, then the rest.
func TestStagedRolloutThroughTheBinaries(t *testing.T) {
	b := setup(t, testenv.Options{})
	opts := seed.Options{Photos: 60, Owners: 5, Seed: 101}
	res := b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	owner := *photos[0].OwnerID
	var ownerPhotos int
	for _, p := range photos {
		if p.OwnerID != nil && *p.OwnerID == owner {
			ownerPhotos++
		}
	}

	out, _, code := b.runAll("migratectl", "plan", "--json", "--quiet")
	require.Zero(t, code)
	var pl struct {
		Photos struct {
			ToMigrate int `json:"to_migrate"`
			Ownerless int `json:"ownerless"`
		} `json:"photos"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &pl))
	require.Equal(t, res.Photos-res.Ownerless, pl.Photos.ToMigrate)
	require.Equal(t, res.Ownerless, pl.Photos.Ownerless)
	_, stderr, code := b.runAll("migratectl", "plan", "--workers", "0")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "--workers and --concurrency must be positive")

	// A list with a bad line is refused whole, with its line number.
	list := b.file("ids.txt", photos[1].ID+"\nnot-an-id\n"+photos[2].ID+"\n")
	_, stderr, code = b.runAll("producer", "--photos-from", list)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, `line 2: "not-an-id"`)
	require.Contains(t, stderr, "nothing was enqueued")
	_, stderr, code = b.runAll("producer", "--sample", "0")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "--sample 0 selects nothing")

	out = b.run("producer", "--owner", owner)
	require.Contains(t, out, "selection: owners "+owner)
	runID := strings.Fields(strings.SplitN(out, "\n", 2)[0])[2]
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())

	out = b.run("migratectl", "runs")
	require.Contains(t, out, runID)
	require.Contains(t, out, "owners "+owner)
	out = b.run("migratectl", "status", "--run", runID)
	require.Contains(t, out, "run:    "+runID)
	require.Contains(t, out, "photos: "+strconv.Itoa(ownerPhotos)+" in scope, "+strconv.Itoa(ownerPhotos)+" done")
	require.Contains(t, b.run("migratectl", "verify", "--run", runID), "verify: OK")

	reportFile := filepath.Join(t.TempDir(), "report.csv")
	_, stderr, code = b.runAll("migratectl", "report", "--run", runID, "-o", reportFile)
	require.Zero(t, code)
	require.Contains(t, stderr, "report of run "+runID+": "+strconv.Itoa(ownerPhotos)+" photos")
	f, err := os.Open(reportFile)
	require.NoError(t, err)
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	require.NoError(t, err)
	require.Greater(t, len(recs), ownerPhotos)
	for _, r := range recs[1:] {
		require.Equal(t, owner, r[2])
		require.Equal(t, "migrated", r[3])
	}
	_, stderr, code = b.runAll("migratectl", "report", "--run", "run-nope")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, `the ledger has no run "run-nope"`)
	_, stderr, code = b.runAll("migratectl", "report")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "give --run RUN")
	_, stderr, code = b.runAll("migratectl", "status", "--run", "run-nope")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "migratectl runs")

	// The full run skips what the stage migrated.
	out = b.run("producer")
	require.Contains(t, out, "found "+strconv.Itoa(res.Photos-ownerPhotos)+" legacy photos")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	require.Contains(t, b.run("migratectl", "verify"), "verify: OK")
}

// Manual review through the binary: a CSV with a bad line is refused with
// exit status 2 and nothing changes; --skip-invalid applies the rest.
func TestArchivedAssignThroughTheBinary(t *testing.T) {
	b := setup(t, testenv.Options{})
	opts := seed.Options{Photos: 40, Seed: 102, OwnerlessRate: 0.2}
	b.env.Seed(t, opts)
	b.run("producer")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	var ownerless []seed.Photo
	owner := ""
	for _, p := range seed.Generate(opts) {
		if p.OwnerID == nil {
			ownerless = append(ownerless, p)
		} else {
			owner = *p.OwnerID
		}
	}
	csvFile := b.file("review.csv", "photo_id,owner_id\n"+ownerless[0].ID+","+owner+"\n"+ownerless[1].ID+",bob\n")
	out, stderr, code := b.runAll("migratectl", "archived", "assign", "--from", csvFile)
	require.Equal(t, 2, code, "stdout %s stderr %s", out, stderr)
	require.Contains(t, stderr, "line 3")
	require.Contains(t, stderr, "nothing was changed")
	require.Equal(t, "archived", *b.env.Photo(t, ownerless[0].ID).Status)

	out, _, code = b.runAll("migratectl", "archived", "assign", "--from", csvFile, "--skip-invalid", "--json")
	require.Zero(t, code)
	var res struct {
		RunID    string `json:"run_id"`
		Assigned int    `json:"assigned"`
		Skipped  []struct {
			Line int `json:"line"`
		} `json:"skipped"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, 1, res.Assigned)
	require.Len(t, res.Skipped, 1)
	require.Equal(t, 3, res.Skipped[0].Line)
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	require.Equal(t, owner, *b.env.Photo(t, ownerless[0].ID).OwnerID)
	require.True(t, strings.HasPrefix(b.env.Photo(t, ownerless[0].ID).Original, "users/"+owner+"/"), "migrated")
	require.Contains(t, b.run("migratectl", "report", "--run", res.RunID), ownerless[0].ID)

	out = b.run("migratectl", "archived", "assign", "--photo", ownerless[0].ID, "--owner", owner)
	require.Contains(t, out, "nothing to do: 1 already assigned")
	_, stderr, code = b.runAll("migratectl", "archived", "assign", "--photo", ownerless[0].ID)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "give --photo ID and --owner USER")
	require.Len(t, ledgertest.Assignments(t, b.env.Store), 1)
}
