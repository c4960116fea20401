package producer_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/producer"
)

// insertPhotos writes n legacy photos rows straight into photos (the producer
// never reads S3).
func (b *testBundle) insertPhotos(t *testing.T, sql string) {
	t.Helper()
	_, err := b.env.Store.Pool().Exec(context.Background(), sql)
	require.NoError(t, err)
}

// Four producers of one run, each on its own shard, interrupted and resumed:
// every legacy photo is enqueued exactly once, each shard keeps its own
// checkpoint, and the run is finished only once every shard is.
func TestShardsEnqueueDisjointRangesOfOneRun(t *testing.T) {
	for _, idType := range []string{"uuid", "bigint"} {
		t.Run(idType, func(t *testing.T) {
			b := setup(t)
			if idType == "bigint" {
				b.insertPhotos(t, `DROP TABLE photos;
CREATE TABLE photos (id bigint PRIMARY KEY, owner_id bigint, original_key text NOT NULL, processed_key text, thumbnail_key text, status text NOT NULL DEFAULT 'ready');
INSERT INTO photos (id, owner_id, original_key) SELECT i * 7, i % 7 + 1, 'uploaded/job' || i || '.jpg' FROM generate_series(1, 1000) i`)
			} else {
				b.insertPhotos(t, `INSERT INTO photos (id, owner_id, original_key)
SELECT md5('p' || i)::uuid, md5('o' || i % 7)::uuid::text, 'uploaded/' || md5('j' || i)::uuid || '.jpg' FROM generate_series(1, 1000) i`)
			}
			// Some rows are not legacy: no shard enqueues them.
			b.insertPhotos(t, `UPDATE photos SET original_key = 'users/' || coalesce(owner_id::text, 'x') || '/raw/' || id::text || '/original.jpg' WHERE (hashtext(id::text) % 10) = 0`)
			var legacy int64
			require.NoError(t, b.env.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM photos WHERE original_key LIKE 'uploaded/%'`).Scan(&legacy))

			const shards = 4
			run := "run-shards-" + idType
			ctx := context.Background()
			// First pass: every shard stops after its first checkpoint.
			var mu sync.Mutex
			var first int64
			g, _ := errgroup.WithContext(ctx)
			for i := range shards {
				g.Go(func() error {
					sctx, cancel := context.WithCancel(ctx)
					defer cancel()
					cfg := producer.Config{RunID: run, Shard: i, Shards: shards, PageSize: 50, GroupSize: 30, InFlight: 1}
					afterGroup := func(int64) { cancel() }
					s, err := producer.SetAfterGroup(producer.New(b.env.Store, b.env.Queue, b.log, cfg), afterGroup).Run(sctx)
					require.ErrorIs(t, err, context.Canceled)
					require.False(t, s.RunFinished)
					mu.Lock()
					first += s.Enqueued
					mu.Unlock()
					return nil
				})
			}
			require.NoError(t, g.Wait())
			require.EqualValues(t, shards*30, first, "each shard stopped after one group")

			// Second pass: each shard resumes its own range and finishes; only
			// the last to finish sees the run finished.
			var finished, second int64
			for i := range shards {
				g.Go(func() error {
					s, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{RunID: run, Shard: i, Shards: shards, PageSize: 50, GroupSize: 30}).Run(ctx)
					require.NoError(t, err)
					require.True(t, s.Resumed)
					mu.Lock()
					second += s.Enqueued
					if s.RunFinished {
						finished++
					}
					mu.Unlock()
					return nil
				})
			}
			require.NoError(t, g.Wait())
			require.EqualValues(t, 1, finished, "the run is finished once, by its last shard")
			require.Equal(t, legacy, first+second)

			ids := b.drainIDs(t)
			require.Len(t, ids, int(legacy), "one message per legacy photo")
			seen := map[string]bool{}
			for _, id := range ids {
				require.False(t, seen[id], "duplicate message for %s", id)
				seen[id] = true
			}
			r, err := b.env.Store.RunGet(ctx, run)
			require.NoError(t, err)
			require.NotNil(t, r.FinishedAt)
			require.Equal(t, legacy, r.Counts.Enqueued)
			require.Equal(t, shards, r.Shards)

			// Shards hold about a quarter of the rows each (sampled bounds).
			per := ledgertest.ShardsEnqueued(t, b.env.Store, run)
			require.Len(t, per, shards)
			for _, n := range per {
				require.InDelta(t, float64(legacy)/shards, float64(n), float64(legacy)/shards*0.2, "shard sizes %v", per)
			}

			// A run split into 4 is joined by 4 shards only.
			_, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{RunID: "run-other-" + idType, Shard: 0, Shards: 2}).Run(ctx)
			require.NoError(t, err)
			_, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{RunID: "run-other-" + idType}).Run(ctx)
			var sce *ledger.ShardCountError
			require.ErrorAs(t, err, &sce, "a sharded run is not resumed without --shard")
		})
	}
}

// With groups in flight, an interrupted producer sends and checkpoints every
// group it had recorded before it returns: nothing is recorded beyond the
// checkpoint, and nothing is sent twice when it resumes.
func TestInterruptedPipelineFinishesWhatItRecorded(t *testing.T) {
	b := setup(t)
	b.insertPhotos(t, `INSERT INTO photos (id, owner_id, original_key)
SELECT md5('p' || i)::uuid, md5('o' || i % 7)::uuid::text, 'uploaded/' || md5('j' || i)::uuid || '.jpg' FROM generate_series(1, 2000) i`)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := producer.Config{PageSize: 100, GroupSize: 20, InFlight: 8, SendConcurrency: 4}
	afterGroup := func(n int64) {
		if n >= 100 {
			cancel()
		}
	}
	s1, err := producer.SetAfterGroup(producer.New(b.env.Store, b.env.Queue, b.log, cfg), afterGroup).Run(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.GreaterOrEqual(t, s1.Enqueued, int64(100))
	require.Less(t, s1.Enqueued, int64(2000), "the interruption stopped the run")

	recorded := int64(ledgertest.Rows(t, b.env.Store, ledgertest.TallyPhotoMoves))
	require.Equal(t, s1.Enqueued, recorded, "every recorded photo was sent and checkpointed")

	d, err := b.env.Queue.Depth(context.Background())
	require.NoError(t, err)
	require.Equal(t, s1.Enqueued, d.Total(), "every checkpointed photo was sent, and no other")

	s2, err := producer.New(b.env.Store, b.env.Queue, b.log, cfg).Run(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(2000)-s1.Enqueued, s2.Enqueued)
	ids := b.drainIDs(t)
	require.Len(t, ids, 2000)
	seen := map[string]bool{}
	for _, id := range ids {
		require.False(t, seen[id], fmt.Sprintf("duplicate message for %s", id))
		seen[id] = true
	}
}
