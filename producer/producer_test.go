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

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
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
	enq := ledgertest.Count(ledgertest.PhotoMoves(t, b.env.Store), func(m ledgertest.PhotoMove) bool { return m.State == "enqueued" && m.RunID == s.RunID })
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
	cfg := producer.Config{PageSize: 40, GroupSize: 20, InFlight: 1}
	afterGroup := func(n int64) {
		if n >= 40 {
			cancel() // stop after the second checkpoint
		}
	}
	s1, err := producer.SetAfterGroup(producer.New(b.env.Store, b.env.Queue, b.log, cfg), afterGroup).Run(ctx)
	require.Error(t, err, "the interrupted run reports it")
	require.EqualValues(t, 40, s1.Enqueued)

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
	n := ledgertest.Rows(t, b.env.Store, ledgertest.TallyPhotoMoves, ledgertest.TallyRuns)
	require.Zero(t, n)
}

func TestFailedPhotosAreSkippedUnlessRetried(t *testing.T) {
	b := setup(t)
	b.env.Seed(t, seed.Options{Photos: 10, Seed: 6})
	ctx := context.Background()
	ledgertest.FailFirstPhotos(t, b.env.Store, 3)
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

// A producer killed outright may have recorded a group as enqueued without
// sending its messages (the checkpoint stays before it). If the application
// deletes such a photo, or archives it, before the producer is restarted, the
// resumed scan never reaches it again: the restart must send those photos
// itself, or they stay enqueued with no message anywhere (soak seed 425707).
func TestResumeSendsRecordedPhotosTheScanNoLongerReaches(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	b.env.Seed(t, seed.Options{Photos: 30, Seed: 5})
	photos, err := b.env.Store.PhotoScanLegacy(ctx, "", 30)
	require.NoError(t, err)
	require.Len(t, photos, 30)

	// The killed producer: the run exists, its first group is recorded, no
	// message was sent and the checkpoint did not move.
	run, _, err := b.env.Store.RunStart(ctx, "", producer.NewRunID(time.Now()), nil)
	require.NoError(t, err)
	require.NoError(t, b.env.Store.PhotoMoveRecordEnqueued(ctx, run.ID, photos[:10]))
	// The application deletes one of them and archives another.
	deleted, archived := photos[2].ID, photos[7].ID
	_, err = b.env.Store.Pool().Exec(ctx, `DELETE FROM photos WHERE id::text = $1`, deleted)
	require.NoError(t, err)
	_, err = b.env.Store.Pool().Exec(ctx, `UPDATE photos SET status = 'archived' WHERE id::text = $1`, archived)
	require.NoError(t, err)

	s, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{PageSize: 20}).Run(ctx)
	require.NoError(t, err)
	require.True(t, s.Resumed)
	require.Equal(t, run.ID, s.RunID)
	require.EqualValues(t, 2, s.Resent, "the two recorded photos the scan no longer reaches are sent by the restart")
	require.EqualValues(t, 28, s.Enqueued)

	ids := b.drainIDs(t)
	require.Len(t, ids, 30, "every recorded photo has a message, and none has two")
	seen := map[string]bool{}
	for _, id := range ids {
		require.False(t, seen[id], "duplicate message for %s", id)
		seen[id] = true
	}
	require.True(t, seen[deleted], "the deleted photo's message (a worker records it as deleted)")
	require.True(t, seen[archived], "the archived photo's message")
}

// The same killed producer, but the application deletes the recorded photo
// after the restart has looked for photos its scan no longer reaches and
// before the scan gets there: neither the first look nor the scan sends it,
// and it stayed enqueued with no message anywhere (the 30-minute soak, seed
// 249867: a photo the application deleted, "enqueued with an empty queue and
// an idle fleet"). The restart looks again once its scan is over.
func TestResumeSendsARecordedPhotoDeletedDuringTheScan(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	b.env.Seed(t, seed.Options{Photos: 100, Seed: 8})
	photos, err := b.env.Store.PhotoScanLegacy(ctx, "", 100)
	require.NoError(t, err)
	require.Len(t, photos, 100)

	// The killed producer: every photo recorded, nothing sent, no checkpoint.
	run, _, err := b.env.Store.RunStart(ctx, "", producer.NewRunID(time.Now()), nil)
	require.NoError(t, err)
	require.NoError(t, b.env.Store.PhotoMoveRecordEnqueued(ctx, run.ID, photos))

	// The restart: after its first group, the application deletes a photo
	// the scan has not reached yet.
	deleted := photos[len(photos)-1].ID
	groups := 0
	p := producer.SetAfterGroup(producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{PageSize: 5}), func(int64) {
		groups++
		if groups == 1 {
			_, err := b.env.Store.Pool().Exec(ctx, `DELETE FROM photos WHERE id::text = $1`, deleted)
			require.NoError(t, err)
		}
	})
	s, err := p.Run(ctx)
	require.NoError(t, err)
	require.True(t, s.Resumed)
	require.Greater(t, groups, 1, "the scan went on after the deletion")
	require.EqualValues(t, 99, s.Enqueued, "the scan did not reach the deleted photo")
	require.EqualValues(t, 1, s.Resent, "the deleted photo, sent once the scan is over")
	require.Contains(t, b.drainIDs(t), deleted, "the deleted photo has a message (a worker records it as deleted)")
}

// A rollback is final until a new run: resuming a run that started before
// the rollback (it was interrupted, by an outage or a kill) must not enqueue
// the rolled-back photo again, in the ledger or the queue. A run started
// after the rollback does.
func TestResumedOlderRunLeavesALaterRollbackAlone(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	b.env.Seed(t, seed.Options{Photos: 12, Seed: 6})
	photos, err := b.env.Store.PhotoScanLegacy(ctx, "", 12)
	require.NoError(t, err)

	// The interrupted run: started, nothing recorded yet.
	run, _, err := b.env.Store.RunStart(ctx, "", producer.NewRunID(time.Now()), nil)
	require.NoError(t, err)
	// Then the operator rolls a photo back (it had been migrated and swapped
	// back: the row holds its legacy keys again).
	rolled := photos[4].ID
	ledgertest.RecordRolledBack(t, b.env.Store, rolled, "run-earlier")
	state := func() string { return ledgertest.PhotoMoveOf(t, b.env.Store, rolled).State }

	s, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{RunID: run.ID}).Run(ctx)
	require.NoError(t, err)
	require.True(t, s.Resumed)
	require.EqualValues(t, 11, s.Enqueued)
	require.Equal(t, "rolled_back", state(), "the older run left the rollback alone")
	require.NotContains(t, b.drainIDs(t), rolled)

	s, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{NewRun: true}).Run(ctx)
	require.NoError(t, err)
	require.Equal(t, "enqueued", state(), "a run started after the rollback enqueues it again")
	require.Contains(t, b.drainIDs(t), rolled)
}

func TestMisconfiguredRunsAreRefusedBeforeAnythingIsRecorded(t *testing.T) {
	b := setup(t)
	b.env.Seed(t, seed.Options{Photos: 5, Seed: 7})
	run := func(cfg producer.Config) error {
		_, err := producer.New(b.env.Store, b.env.Queue, b.log, cfg).Run(context.Background())
		return err
	}
	var se *producer.InvalidShardError
	require.ErrorAs(t, run(producer.Config{Shard: 4, Shards: 4}), &se)
	require.Equal(t, producer.InvalidShardError{Index: 4, Count: 4}, *se)
	require.ErrorIs(t, run(producer.Config{Shard: 0, Shards: 2, Selection: &ledger.Selection{Limit: 5}}), producer.ErrShardWithListOrLimit)
	require.ErrorIs(t, run(producer.Config{Shard: 0, Shards: 2, NewRun: true}), producer.ErrNewShardedRunWithoutID)
	var le *producer.InvalidLimitError
	require.ErrorAs(t, run(producer.Config{Selection: &ledger.Selection{Limit: -1}}), &le)
	require.EqualValues(t, -1, le.Limit)

	n := ledgertest.Rows(t, b.env.Store, ledgertest.TallyPhotoMoves, ledgertest.TallyRuns)
	require.Zero(t, n, "no run, no ledger row")
	require.Empty(t, b.drainIDs(t))
}
