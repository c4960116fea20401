package e2e_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

var newRunRe = regexp.MustCompile(`new run (\S+)`)

// TestAbortStopsARun aborts a run whose messages are all queued: the workers
// then migrate none of its photos and leave nothing under users/, the run
// cannot be resumed nor record photos, and a new run migrates them.
func TestAbortStopsARun(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 30, Seed: 9}
	b.env.Seed(t, opts)

	out := b.run("producer")
	require.Contains(t, out, "enqueued 30")
	run := newRunRe.FindStringSubmatch(out)[1]

	out = b.run("migratectl", "abort", "--run", run)
	require.Contains(t, out, "aborted run "+run)
	require.Contains(t, out, ": 30 photos enqueued or in progress will not be migrated")
	d, err := b.env.Queue.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 30, d.Total(), "the run's messages are still queued")

	// The workers receive every message and drop it.
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	require.Zero(t, b.count(`SELECT count(*) FROM photos WHERE original_key LIKE 'users/%'`), "no row of the aborted run was swapped")
	require.Equal(t, 30, ledgertest.PhotoMovesIn(t, b.env.Store, "rolled_back"))
	users := 0
	require.NoError(t, b.env.Objects.ListEach(ctx, "users/", func(k string, _ int64, _ string) error {
		if !strings.HasPrefix(k, "users/.keymigrate-probe/") {
			users++
		}
		return nil
	}))
	require.Zero(t, users, "no copy of the aborted run's photos is left under users/")
	d, err = b.env.Queue.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, d.Total(), "the dropped messages were deleted")

	// Twice is harmless; an unknown run is refused by name.
	require.Contains(t, b.run("migratectl", "abort", "--run", run), "was already aborted")
	bad, err := b.cmd("migratectl", "abort", "--run", "run-nope").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(bad), "run not found: run-nope")
	bad, err = b.cmd("migratectl", "abort").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(bad), "give --run R")

	// A producer of the aborted run can neither resume it nor record photos.
	bad, err = b.cmd("producer", "--run-id", run).CombinedOutput()
	require.Error(t, err, "resuming an aborted run: %s", bad)
	require.Contains(t, string(bad), "run already finished")
	p := b.env.Photo(t, seed.Generate(opts)[0].ID)
	require.ErrorIs(t, b.env.Store.PhotoMoveRecordEnqueued(ctx, run, []ledger.Photo{p}), ledger.ErrRunAborted)

	// A new run moves the photos again.
	out = b.run("producer")
	require.Contains(t, out, "enqueued 30")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	require.Zero(t, b.count(`SELECT count(*) FROM photos WHERE `+legacyRow), "the new run migrated or archived every photo")
	require.Contains(t, b.run("migratectl", "verify"), "verify: OK")
}

// legacyRow selects rows still referencing a legacy key that are not archived.
const legacyRow = `status IS DISTINCT FROM 'archived' AND (original_key NOT LIKE 'users/%' OR processed_key NOT LIKE 'users/%' OR thumbnail_key NOT LIKE 'users/%')`
