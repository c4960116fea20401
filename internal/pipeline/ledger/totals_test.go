package ledger_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/producer"
)

// PhotoMoveTotals counts the finished photos apart from the rest, times the
// finished ones, and counts the failures recorded on handing a photo back.
func TestPhotoMoveTotals(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 20, Owners: 4, Seed: 19, OwnerlessRate: -1}
	env.Seed(t, opts)

	none, err := env.Store.PhotoMoveTotals(ctx)
	require.NoError(t, err)
	require.Equal(t, ledger.PhotoMoveTotals{}, none, "an empty ledger")

	owner, other, n := "", "", int64(0)
	for _, p := range seed.Generate(opts) {
		switch {
		case owner == "" || owner == *p.OwnerID:
			owner = *p.OwnerID
			n++
		case other == "":
			other = p.ID
		}
	}
	env.MigrateWith(t, producer.Config{Selection: &ledger.Selection{Owners: []string{owner}}})
	env.Enqueue(t) // the rest: enqueued, not finished
	require.NoError(t, env.Store.FailureRecord(ctx, ledger.Failure{PhotoID: other, MessageID: "m1", Reason: "source_missing", Error: "handed back"}))

	got, err := env.Store.PhotoMoveTotals(ctx)
	require.NoError(t, err)
	require.Equal(t, n, got.Finished)
	require.Equal(t, 20-n, got.Unfinished)
	require.NotNil(t, got.FirstStarted)
	require.NotNil(t, got.LastFinished)
	require.True(t, got.LastFinished.After(*got.FirstStarted), "the last finished after the first started")
	require.EqualValues(t, 1, got.HandedBack, "the failure recorded as not permanent")
	require.Zero(t, got.Failed)
	require.Zero(t, got.Retries, "every photo moved at its first attempt")
}
