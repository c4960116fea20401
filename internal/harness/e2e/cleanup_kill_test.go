package e2e_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// cleanup --shard i/n SIGKILLed at random points, shard after shard, then run
// again with the same arguments until it finishes: the bucket ends exactly as
// one uninterrupted cleanup leaves it (nothing deleted that must stay, nothing
// left that should go), and the ledger records exactly the objects gone.
func TestCleanupShardsKilledAtRandomPointsFinishWhenRunAgain(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 80, Seed: 612, OwnerlessRate: 0.1, OrphanRate: 0.2}
	b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	b.run("producer")
	require.NoError(t, b.worker("--drain", "--concurrency", "8", "--wait-time", "1s").Wait())

	// What must stay: the archived photos' objects, the orphans, and the
	// legacy object of a copy the application lost.
	want := map[string]bool{}
	for _, p := range photos {
		if p.OwnerID == nil {
			for _, o := range p.Objects {
				want[o.Key] = true
			}
		}
		if p.OrphanObject != nil {
			want[p.OrphanObject.Key] = true
		}
	}
	first := ledgertest.FirstCommitted(t, b.env.Store)
	lostCopy, itsLegacy := first.NewKey, first.OldKey
	require.NoError(t, b.env.Objects.Delete(ctx, lostCopy))
	want[itsLegacy] = true

	// A dry run of one shard: counts and examples on the terminal, every
	// object in the --list file.
	list := filepath.Join(t.TempDir(), "cleanup-0-of-2.tsv")
	dry := b.run("migratectl", "cleanup", "--grace", "0", "--dry-run", "--shard", "0/2", "--list", list)
	t.Logf("dry run of shard 0/2:\n%s", dry)
	body, err := os.ReadFile(list)
	require.NoError(t, err)
	var checked int
	_, err = fmt.Sscanf(dry[strings.Index(dry, "(")+1:], "%d checked", &checked)
	require.NoError(t, err, dry)
	require.Equal(t, checked, strings.Count(string(body), "\n"), "a line per object looked at")

	seedKill := time.Now().UnixNano()
	t.Logf("kill points from seed %d", seedKill)
	rng := rand.New(rand.NewPCG(uint64(seedKill), 1))
	const n = 2
	args := func(i int) []string {
		return []string{"cleanup", "--grace", "0", "--shard", fmt.Sprintf("%d/%d", i, n), "--batch", "4", "--concurrency", "4"}
	}
	kills := 0
	// unfinished[i]: shard i's last attempt was killed. An attempt is killed
	// a few milliseconds after its k-th page (its progress line), not at a
	// wall-clock time: on a fast machine a whole shard takes less than any
	// fixed delay (CI finished every attempt before 150 ms and killed none).
	// A later attempt, with fewer pages left, may finish before its kill
	// point; the shard is then done, and what is checked below is that it
	// stays done.
	unfinished := make([]bool, n)
	for i := range n {
		for range 4 {
			killed := b.runKilledAfterPage(args(i), 1+rng.IntN(4), time.Duration(rng.IntN(5000))*time.Microsecond)
			if killed {
				kills++
			}
			unfinished[i] = killed
		}
	}
	require.Positive(t, kills)
	if slices.Contains(unfinished, true) {
		mid := b.legacyObjects()
		require.Less(t, len(want), len(mid), "a shard killed before its end: something is left to delete")
	}

	for i := range n {
		out := b.run("migratectl", args(i)...)
		t.Logf("shard %d/%d run again (its last attempt killed: %t):\n%s", i, n, unfinished[i], out)
		if unfinished[i] {
			require.Contains(t, out, "deleted", out)
		}
		require.Contains(t, b.run("migratectl", args(i)...), "had finished: nothing done")
	}

	left := map[string]bool{}
	for k := range b.legacyObjects() {
		left[k] = true
	}
	require.Equal(t, want, left, "exactly what must stay is left")

	// The ledger records exactly the objects gone, with no intent pending.
	for _, o := range ledgertest.ObjectMoves(t, b.env.Store) {
		if o.CommittedAt == nil {
			continue
		}
		k, deleted, intent := o.OldKey, o.DeletedAt != nil, o.DeleteIntentAt != nil
		require.Equal(t, !left[k], deleted, "%s: recorded deleted iff gone", k)
		require.False(t, intent && !deleted, "%s: an intent left pending", k)
	}

	report := b.run("migratectl", "cleanup", "--report")
	t.Logf("after %d kills:\n%s", kills, report)
	require.Contains(t, report, `cleanup pass "grace=0s", 2 shards: finished`)
	require.Contains(t, report, "kept 1:")
	out, code := b.runExit("migratectl", "verify")
	require.Equal(t, 0, code, out)
	require.True(t, strings.Contains(out, "1 missing (deleted by the application, or lost)"), out)
}

// runKilledAfterPage runs migratectl with args and SIGKILLs it delay after
// it reports its page-th page on stderr. It reports whether the process was
// killed; one that finished first must have succeeded.
func (b *testBundle) runKilledAfterPage(args []string, page int, delay time.Duration) bool {
	t := b.t
	t.Helper()
	c := b.cmd("migratectl", args...)
	stderr, err := c.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, c.Start())
	var said []string
	pages := 0
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		said = append(said, sc.Text())
		if strings.Contains(sc.Text(), " checked, ") {
			pages++
			if pages == page {
				time.Sleep(delay)
				require.NoError(t, c.Process.Kill()) // SIGKILL; a no-op on a process that has exited
			}
		}
	}
	err = c.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) && !exit.Exited() {
		return true // ended by the signal
	}
	require.NoError(t, err, "migratectl %v finished before its kill point and failed:\n%s", args, strings.Join(said, "\n"))
	return false
}
