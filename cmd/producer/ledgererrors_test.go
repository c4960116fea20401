package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The ledger describes a condition; the producer command says it in its flags.
// Each case gives the error as the ledger returns it and checks what the
// operator reads: the flag, what was wrong and what to do, with the ledger's
// error still in the chain.
func TestLedgerErrorsInFlagTerms(t *testing.T) {
	t.Parallel()
	_, sampleErr := ledger.SampleThreshold(12.345)
	require.Error(t, sampleErr)
	finished := fmt.Errorf("%w: run r1 finished at %s", ledger.ErrRunFinished, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339))
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"sample", sampleErr, "--sample 12.345: give a percentage from 0.01 to 100 with at most two decimals (1 for 1%)"},
		{"selection differs", &ledger.SelectionDiffersError{RunID: "r1", Recorded: &ledger.Selection{SamplePercent: 50}, Asked: &ledger.Selection{}},
			"run r1 is unfinished and selects sample 50%, but this invocation selects every legacy photo: run the producer again with the run's selection to finish it, or pass --new-run to start another run"},
		{"not sharded", &ledger.ShardCountError{RunID: "r1", Got: 4},
			"run r1 was started without shards and has made progress: it cannot be split any more; finish it without --shard, or pass --new-run with --run-id to start a sharded run"},
		{"sharded, no shard given", &ledger.ShardCountError{RunID: "r1", Recorded: 4},
			"run r1 is split into 4 shards: each producer of it takes one shard; run one producer per shard with --shard 0/4 … 3/4"},
		{"another shard count", &ledger.ShardCountError{RunID: "r1", Recorded: 4, Got: 2},
			"run r1 is split into 4 shards, not 2; use --shard i/4"},
		{"finished", finished, "run already finished: run r1 finished at 2026-01-02T03:04:05Z; omit --run-id to start a new run"},
		{"not a producer run", fmt.Errorf("run r1 is an assign run: %w", ledger.ErrNotProducerRun), "run r1 is an assign run: not a producer run; omit --run-id to start a new run"},
		{"aborted", fmt.Errorf("%w: run r1 was aborted at 2026-01-02T03:04:05Z", ledger.ErrRunAborted),
			"run aborted: run r1 was aborted at 2026-01-02T03:04:05Z: stop this producer; a new run (--new-run) enqueues again"},
	} {
		err := ledgerInFlagTerms(c.err, &ledger.Selection{SamplePercent: 12.345})
		require.EqualError(t, err, c.want, c.name)
		require.True(t, errors.Is(err, c.err), "%s: the ledger's error stays in the chain", c.name)
	}
	other := errors.New("send batch: timeout")
	require.Equal(t, other, ledgerInFlagTerms(other, &ledger.Selection{}))
	require.NoError(t, ledgerInFlagTerms(nil, &ledger.Selection{}))
}
