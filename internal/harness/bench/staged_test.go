package bench_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/bench"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
)

// A staged run on the real stack, tiny: both stages and both plans give
// their figures, the estimate and the measurement make a ratio, and stage 2
// migrates exactly the photos the plan between the stages counted. The
// timings themselves are noise at this size and on a shared machine: `make
// staged-bench` measures them (docs/operating-plan-rollout-report.md).
func TestAStagedRunComparesThePlanWithTheSecondStage(t *testing.T) {
	testenv.Require(t)
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "github.com/keymigrate/keymigrate/cmd/worker", "github.com/keymigrate/keymigrate/cmd/migratectl")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	ctx := context.Background()
	stack, err := bench.OpenStack(ctx, os.Getenv("KEYMIGRATE_TEST_DATABASE_URL"), os.Getenv("AWS_ENDPOINT_URL_S3"))
	require.NoError(t, err)
	cfg := bench.Config{Stack: stack, WorkerBin: filepath.Join(dir, "worker"), LogDir: filepath.Join(dir, "logs"), Photos: 60, Seed: 11, Progress: logWriter{t}}
	spec := bench.StagedSpec{Fleet: bench.FleetSpec{Workers: 1, Concurrency: 4}, SamplePercent: 25, Calibrate: 3, Migratectl: filepath.Join(dir, "migratectl")}

	rep, err := bench.StagedRun(ctx, cfg, spec)
	require.NoError(t, err)
	require.NotNil(t, rep.Scratch)
	require.Equal(t, "scratch copy", rep.Scratch.Source)
	require.Positive(t, rep.Scratch.P50)
	require.Equal(t, "ledger", rep.Plan.Source)
	require.Equal(t, rep.Stage1.Migrated, rep.Plan.Calibrated, "the plan read stage 1's photos")
	require.Positive(t, rep.Plan.SecondsP50)
	require.Positive(t, rep.Plan.Occupancy)

	for _, s := range []bench.StageResult{rep.Stage1, rep.Stage2} {
		require.NotEmpty(t, s.RunID)
		require.Positive(t, s.Migrated)
		require.Equal(t, s.Enqueued, s.Migrated+s.Archived, "every photo the stage enqueued was migrated or archived")
		require.Positive(t, s.Span)
		require.GreaterOrEqual(t, s.Wall, s.Span)
		require.Positive(t, s.P50)
		require.LessOrEqual(t, s.PeakInFlight, 4)
	}
	require.NotEqual(t, rep.Stage1.RunID, rep.Stage2.RunID)
	require.Equal(t, rep.RemainingAfter, rep.Stage2.Migrated, "stage 2 migrated exactly the photos left after stage 1")
	require.EqualValues(t, 60, rep.Stage1.Enqueued+rep.Stage2.Enqueued, "the stages together enqueued every photo once")
	require.Positive(t, rep.Ratio())

	var out strings.Builder
	rep.Write(&out)
	t.Log("\n" + out.String())
	require.Contains(t, out.String(), "measured ÷ estimate")
	require.Contains(t, out.String(), "a worker's real per-photo p50")
}

// logWriter sends the bench's progress lines to the test's log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
