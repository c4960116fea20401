package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
)

// buildMigratectl builds this command into a temporary directory.
func buildMigratectl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "migratectl")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "build migratectl: %s", out)
	return bin
}

// verdict is what a pass's verdict must agree on, from `verify --json`.
type verdict struct {
	Rows      int64            `json:"rows_checked"`
	Objects   int64            `json:"objects_checked"`
	Listed    int64            `json:"legacy_objects_listed"`
	Present   int64            `json:"legacy_objects_present"`
	Orphans   int64            `json:"orphan_count"`
	Problems  int64            `json:"problem_count"`
	ByKind    map[string]int64 `json:"problems_by_kind"`
	Requeue   int64            `json:"requeue_count"`
	Repair    int64            `json:"repair_count"`
	Resumed   bool             `json:"resumed"`
	Heads     int64            `json:"head_requests"`
	Superseed int64            `json:"superseded_by_application"`
}

// A verify shard killed with SIGKILL at random points and run again with the
// same arguments continues from its cursor: after as many kills as it takes,
// the union of the shards is exactly the verdict of an uninterrupted run
// (a page counted twice or skipped would change the counts).
func TestVerifyKilledAtRandomPointsResumesToTheSameVerdict(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	bin := buildMigratectl(t)
	opts := seed.Options{Photos: 300, Seed: 17, OrphanRate: 0.2, OwnerlessRate: 0.05}
	env.Seed(t, opts)
	env.Migrate(t)
	// Some damage, so that problems are counted too.
	victim := seed.Generate(opts)[0]
	env.Put(t, "animated/"+victim.JobID+"/0a0b0c0d-late_loop.mp4", []byte("late"), "video/mp4", nil)

	run := func(args ...string) (verdict, int) {
		c := exec.Command(bin, append([]string{"verify", "--json", "--concurrency", "2"}, args...)...)
		c.Env = env.Environ()
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		code := c.ProcessState.ExitCode()
		require.Contains(t, []int{0, 2}, code, "verify %v: %v\n%s", args, err, errb.String())
		var v verdict
		dec := out.Bytes()
		var wrapped struct {
			Report *verdict `json:"report"`
		}
		if json.Unmarshal(dec, &wrapped) == nil && wrapped.Report != nil {
			return *wrapped.Report, code
		}
		require.NoError(t, json.Unmarshal(dec, &v), "%s", dec)
		return v, code
	}
	start := time.Now()
	whole, code := run()
	t.Logf("uninterrupted: %s", time.Since(start))
	require.Equal(t, 2, code, "the late animation fails the gate")
	require.Positive(t, whole.Listed)

	seedNow := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seedNow), 0))
	t.Logf("kill points from seed %d", seedNow)
	const n = 2
	kills, resumed := 0, 0
	for shard := range n {
		args := []string{"--shard", []string{"0/2", "1/2"}[shard]}
		for attempt := 0; ; attempt++ {
			require.Less(t, attempt, 40, "shard %d never finished", shard)
			c := exec.Command(bin, append([]string{"verify", "--json", "--concurrency", "2"}, args...)...)
			c.Env = env.Environ()
			var out bytes.Buffer
			c.Stdout, c.Stderr = &out, os.Stderr
			require.NoError(t, c.Start())
			exited := make(chan error, 1)
			go func() { exited <- c.Wait() }()
			select {
			case <-exited:
			// Random points, later and later, so that every shard ends.
			case <-time.After(time.Duration(200+rng.IntN(600+200*attempt)) * time.Millisecond):
				require.NoError(t, c.Process.Signal(syscall.SIGKILL))
				<-exited
			}
			if c.ProcessState.Success() || c.ProcessState.ExitCode() == 2 {
				var v verdict
				require.NoError(t, json.Unmarshal(out.Bytes(), &v))
				if v.Resumed {
					resumed++
				}
				break
			}
			kills++
		}
	}
	t.Logf("%d kills; %d shards finished in a resumed run", kills, resumed)
	require.Positive(t, kills, "the test killed verify at least once")
	require.Positive(t, resumed, "a shard finished from a cursor a killed run left")

	union, code := run("--report", "--shard", "0/2")
	require.Equal(t, 2, code)
	whole.Resumed, union.Resumed = false, false
	whole.Heads, union.Heads = 0, 0
	require.Equal(t, whole, union)
	_ = context.Background()
}
