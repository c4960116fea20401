package main_test

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// An operator sees who runs each unfinished shard, and when its lease
// lapses, in 'verify --report', 'cleanup --report' and 'status'; and a
// lease whose holder stopped renewing is shown as lapsed.
func TestReportsNameTheHolderOfEachUnfinishedShard(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	bin := buildMigratectl(t)
	ctx := context.Background()
	take := func(pass ledger.Pass, scope string, shard int, holder string) {
		c, err := env.Store.PassCursorJoin(ctx, pass, scope, shard, 2)
		require.NoError(t, err)
		_, err = env.Store.PassLeaseTake(ctx, c, holder, 10*time.Minute)
		require.NoError(t, err)
	}
	take(ledger.PassVerify, verify.Scope(verify.Options{}), 0, "verify-pod-0")
	take(ledger.PassCleanup, cleanup.Scope(cleanup.Options{}), 1, "cleanup-pod-1")
	run := func(args ...string) string {
		c := exec.Command(bin, args...)
		c.Env = env.Environ()
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		_ = c.Run()
		require.Contains(t, []int{0, 2}, c.ProcessState.ExitCode(), "%v: %s", args, errb.String())
		return out.String()
	}

	out := run("verify", "--report", "--shard", "0/2")
	require.Contains(t, out, "missing shards: 0 (started; held by verify-pod-0, lease lapses at ")
	require.Contains(t, out, "(in 10m0s) unless renewed), 1 (not started)")
	out = run("cleanup", "--report")
	require.Contains(t, out, "shard 1/2: at the start, held by cleanup-pod-1, lease lapses at ")
	out = run("status")
	require.Contains(t, out, "shard 0/2 started")
	require.Contains(t, out, "held by verify-pod-0, lease lapses at ")

	ledgertest.LapseLeases(t, env.Store, ledger.PassVerify)
	out = run("verify", "--report", "--shard", "0/2")
	require.Contains(t, out, "0 (started; held by verify-pod-0, lease lapsed at ")
	require.Contains(t, out, "the next run takes the shard over")
}
