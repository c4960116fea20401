package producer_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/keymigrate/keymigrate/internal/queue"
	"github.com/keymigrate/keymigrate/internal/seed"
	"github.com/keymigrate/keymigrate/internal/testenv"
	"github.com/keymigrate/keymigrate/producer"
)

type testBundle struct {
	env *testenv.Env
	log *zap.Logger
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	t.Parallel()
	return &testBundle{env: testenv.New(t, testenv.Options{}), log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
}

// drainIDs receives every message in the queue and returns the photo ids.
func (b *testBundle) drainIDs(t *testing.T) []string {
	t.Helper()
	var ids []string
	for {
		msgs, err := b.env.Queue.Receive(context.Background(), 10, 0, time.Minute)
		require.NoError(t, err)
		if len(msgs) == 0 {
			return ids
		}
		for _, m := range msgs {
			dm, err := queue.Decode(m.Body)
			require.NoError(t, err)
			ids = append(ids, dm.PhotoID)
		}
	}
}

func TestEnqueuesEachLegacyPhotoOnce(t *testing.T) {
	b := setup(t)
	res := b.env.Seed(t, seed.Options{Photos: 57, Seed: 3})
	s, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{PageSize: 20}).Run(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 57, s.Found)
	require.EqualValues(t, 57, s.Enqueued)
	require.EqualValues(t, res.Ownerless, s.Ownerless)
	ids := b.drainIDs(t)
	require.Len(t, ids, 57)
	seen := map[string]bool{}
	for _, id := range ids {
		require.False(t, seen[id], "duplicate message for %s", id)
		seen[id] = true
	}
	var enq int
	require.NoError(t, b.env.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM keymigrate.photo_moves WHERE state='enqueued' AND run_id=$1`, s.RunID).Scan(&enq))
	require.Equal(t, 57, enq)

	// A second run finds the photos still legacy (no worker ran) and starts a
	// new run: the finished one is not resumed.
	s2, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{}).Run(context.Background())
	require.NoError(t, err)
	require.NotEqual(t, s.RunID, s2.RunID)
	require.False(t, s2.Resumed)
}

func TestInterruptedRunResumesWithoutDuplicates(t *testing.T) {
	b := setup(t)
	b.env.Seed(t, seed.Options{Photos: 95, Seed: 4})
	ctx, cancel := context.WithCancel(context.Background())
	cfg := producer.Config{PageSize: 40, GroupSize: 20, InFlight: 1, AfterGroup: func(n int64) {
		if n >= 40 {
			cancel() // stop after the second checkpoint
		}
	}}
	s1, err := producer.New(b.env.Store, b.env.Queue, b.log, cfg).Run(ctx)
	require.Error(t, err, "the interrupted run reports it")
	require.EqualValues(t, 40, s1.Enqueued)

	cfg.AfterGroup = nil
	s2, err := producer.New(b.env.Store, b.env.Queue, b.log, cfg).Run(context.Background())
	require.NoError(t, err)
	require.True(t, s2.Resumed)
	require.Equal(t, s1.RunID, s2.RunID)
	require.EqualValues(t, 55, s2.Enqueued, "the restart sends only what the first invocation had not")
	require.EqualValues(t, 95, s2.RunTotals.Enqueued)

	ids := b.drainIDs(t)
	require.Len(t, ids, 95)
	seen := map[string]bool{}
	for _, id := range ids {
		require.False(t, seen[id], "duplicate message for %s", id)
		seen[id] = true
	}
	_, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{RunID: s1.RunID}).Run(context.Background())
	require.ErrorContains(t, err, "already finished", "a finished run is not resumed by name")
}

func TestDryRunSendsAndRecordsNothing(t *testing.T) {
	b := setup(t)
	b.env.Seed(t, seed.Options{Photos: 12, Seed: 5})
	var out bytes.Buffer
	s, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{DryRun: true, Out: &out}).Run(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 12, s.Enqueued)
	require.Equal(t, 12, strings.Count(out.String(), "enqueue "))
	d, err := b.env.Queue.Depth(context.Background())
	require.NoError(t, err)
	require.Zero(t, d.Total())
	var n int
	require.NoError(t, b.env.Store.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM keymigrate.photo_moves) + (SELECT count(*) FROM keymigrate.runs)`).Scan(&n))
	require.Zero(t, n)
}

func TestFailedPhotosAreSkippedUnlessRetried(t *testing.T) {
	b := setup(t)
	b.env.Seed(t, seed.Options{Photos: 10, Seed: 6})
	ctx := context.Background()
	_, err := b.env.Store.Pool().Exec(ctx, `INSERT INTO keymigrate.photo_moves (photo_id, state) SELECT id::text, 'failed' FROM photos ORDER BY id LIMIT 3`)
	require.NoError(t, err)
	s, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{}).Run(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 10, s.Found)
	require.EqualValues(t, 3, s.Skipped)
	require.EqualValues(t, 7, s.Enqueued)
	require.Len(t, b.drainIDs(t), 7)

	s, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{RetryFailed: true}).Run(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 0, s.Skipped)
	require.EqualValues(t, 10, s.Enqueued)
}
