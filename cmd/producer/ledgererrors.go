package main

import (
	"errors"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
)

// ledgerInFlagTerms words, in the command's flags, the errors the ledger returns
// through a producer run: they describe the condition, the command says what
// to do about it.
func ledgerInFlagTerms(err error, sel *ledger.Selection) error {
	var differs *ledger.SelectionDiffersError
	var shards *ledger.ShardCountError
	switch {
	case errors.Is(err, ledger.ErrSamplePercent):
		return cli.Reword(err, "--sample %g: give a percentage from 0.01 to 100 with at most two decimals (1 for 1%%)", sel.SamplePercent)
	case errors.As(err, &differs):
		return cli.Reword(err, "%v: run the producer again with the run's selection to finish it, or pass --new-run to start another run", err)
	case errors.As(err, &shards) && shards.Recorded == 0:
		return cli.Reword(err, "%v; finish it without --shard, or pass --new-run with --run-id to start a sharded run", err)
	case errors.As(err, &shards) && shards.Got == 0:
		return cli.Reword(err, "%v; run one producer per shard with --shard 0/%d … %d/%d", err, shards.Recorded, shards.Recorded-1, shards.Recorded)
	case errors.As(err, &shards):
		return cli.Reword(err, "%v; use --shard i/%d", err, shards.Recorded)
	case errors.Is(err, ledger.ErrRunAborted):
		return cli.Reword(err, "%v: stop this producer; a new run (--new-run) enqueues again", err)
	case errors.Is(err, ledger.ErrRunFinished), errors.Is(err, ledger.ErrNotProducerRun):
		return cli.Reword(err, "%v; omit --run-id to start a new run", err)
	}
	return err
}
