package dlq_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/dlq"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/worker"
)

// deadLetter puts n photos with missing sources (enqueued by the producer)
// and 2 malformed messages through a worker, so the DLQ and the ledger are
// filled the real way.
func deadLetter(t *testing.T, env *testenv.Env, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for range n {
		id, owner := uuid.NewString(), uuid.NewString()
		env.InsertPhoto(t, id, &owner, "uploaded/"+uuid.NewString()+".jpg", nil, nil)
		ids = append(ids, id)
	}
	require.NoError(t, env.Queue.SendBatch(ctx, []string{"garbage", `{"v":9}`}, 5*time.Second))
	env.Migrate(t)
	d, err := env.DLQ.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, n+2, d.Total())
	return ids
}

func mainIDs(t *testing.T, env *testenv.Env) map[string]int {
	t.Helper()
	out := map[string]int{}
	for {
		msgs, err := env.Queue.Receive(context.Background(), 10, 0, time.Minute)
		require.NoError(t, err)
		if len(msgs) == 0 {
			return out
		}
		for _, m := range msgs {
			out[m.Body]++
		}
	}
}

func TestListGroupsByReasonWithoutConsuming(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ids := deadLetter(t, env, 12)
	ctx := context.Background()
	for range 2 { // listing twice changes nothing
		l, err := dlq.List(ctx, env.Store, env.DLQ, "", 5, 100)
		require.NoError(t, err)
		require.EqualValues(t, 14, l.Depth.Visible, "nothing consumed or hidden")
		require.EqualValues(t, 14, l.Accounted)
		byReason := map[string]int64{}
		for _, g := range l.Groups {
			byReason[g.Reason] = g.Messages
			if g.Reason == "source_missing" {
				require.ElementsMatch(t, ids, g.PhotoIDs)
			}
			if g.Reason == "malformed_message" {
				require.Len(t, g.MessageIDs, 2)
			}
		}
		require.Equal(t, map[string]int64{"source_missing": 12, "malformed_message": 2}, byReason)
	}
}

func TestRedriveByReasonAndMax(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	deadLetter(t, env, 12)
	ctx := context.Background()
	log := zap.NewNop()

	res, err := dlq.Redrive(ctx, env.Store, env.DLQ, env.Queue, log, dlq.Options{Reason: "source_missing", Max: 5, Hold: 20 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 5, res.Moved)
	require.Equal(t, "batches", res.Method)
	got := mainIDs(t, env)
	require.Len(t, got, 5)
	for body := range got {
		_, err := queue.Decode(body)
		require.NoError(t, err, "only source_missing messages moved, not malformed ones")
	}
	d, err := env.DLQ.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 9, d.Visible, "the rest is back in the DLQ, visible")
	l, err := dlq.List(ctx, env.Store, env.DLQ, "source_missing", 5, 100)
	require.NoError(t, err)
	require.EqualValues(t, 7, l.Accounted, "redriven messages leave the listing")
}

func TestInterruptedRedriveLosesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	deadLetter(t, env, 25)
	ctx := context.Background()
	log := zap.NewNop()

	// A limit above the DLQ's depth moves batches on every server (without
	// one, a server with StartMessageMoveTask would move the whole queue
	// at once, and there is no batch to interrupt).
	all := dlq.Options{Max: 1000}
	ctx1, cancel := context.WithCancel(ctx)
	res, err := dlq.RedriveHooked(ctx1, env.Store, env.DLQ, env.Queue, log, all, dlq.Hooks{AfterBatch: func(int) { cancel() }})
	require.Error(t, err)
	require.Equal(t, 10, res.Moved)
	res, err = dlq.Redrive(ctx, env.Store, env.DLQ, env.Queue, log, all)
	require.NoError(t, err)
	require.Equal(t, "batches", res.Method)
	require.Equal(t, 17, res.Moved)

	got := mainIDs(t, env)
	total := 0
	for _, n := range got {
		total += n
	}
	require.Equal(t, 27, total, "every message moved exactly once")
	require.Len(t, got, 27)
	d, err := env.DLQ.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, d.Total())
}

// Case 9: dlq list still prints the ledger's view when SQS is unreachable.
func TestListShowsTheLedgerWhenSQSIsUnreachable(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	ids := deadLetter(t, env, 2)
	dead := sqs.NewFromConfig(env.AWS, func(o *sqs.Options) {
		o.BaseEndpoint = aws.String("http://127.0.0.1:1")
		o.RetryMaxAttempts = 1
	})
	l, err := dlq.List(ctx, env.Store, queue.New(dead, env.DLQ.URL()), "", 5, 50)
	require.NoError(t, err)
	require.NotEmpty(t, l.DepthError)
	var listed []string
	for _, g := range l.Groups {
		listed = append(listed, g.PhotoIDs...)
	}
	require.ElementsMatch(t, ids, listed)
}

// Soak finding F3: a redrive while workers run ends. Photos that fail again
// are dead-lettered again during the redrive; it moves each message that was
// in the DLQ when it started once, and leaves the new dead letters there.
func TestRedriveEndsWhileWorkersDeadLetterAgain(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ids := deadLetter(t, env, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := worker.DefaultConfig()
	c.WaitTime = time.Second
	c.ControlInterval = 500 * time.Millisecond
	w := worker.New(env.Store, env.Objects, env.Queue, env.DLQ, zap.NewNop(), c)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()

	res, err := dlq.Redrive(ctx, env.Store, env.DLQ, env.Queue, zap.NewNop(), dlq.Options{Reason: "source_missing", Hold: 20 * time.Second})
	require.NoError(t, err, "the redrive ended")
	require.Equal(t, len(ids), res.Moved, "each message moved once")
	// The workers fail them again: they are back in the DLQ, not lost.
	require.Eventually(t, func() bool {
		d, err := env.DLQ.Depth(ctx)
		return err == nil && d.Total() == int64(len(ids))+2
	}, 30*time.Second, 200*time.Millisecond)
}

// A worker may receive a redriven message, fail the photo again and
// dead-letter it before the redrive has recorded the move in the ledger. The
// ledger must then say failed (the message is back in the DLQ), not enqueued:
// a photo enqueued in the ledger with no message anywhere is one nobody
// works on and status counts as open (soak seed 2945832088).
func TestRedriveNeverMarksEnqueuedAPhotoThatFailedAgain(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ids := deadLetter(t, env, 3)
	ctx := context.Background()
	res, err := dlq.RedriveHooked(ctx, env.Store, env.DLQ, env.Queue, zap.NewNop(), dlq.Options{Reason: "source_missing"},
		// A worker takes the messages as soon as they are in the main queue.
		dlq.Hooks{AfterSend: func() { env.Migrate(t) }})
	require.NoError(t, err)
	require.Equal(t, len(ids), res.Moved)
	d, err := env.DLQ.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, len(ids)+2, d.Total(), "the photos failed again: back in the DLQ")
	for _, id := range ids {
		state := ledgertest.PhotoMoveOf(t, env.Store, id).State
		require.Equal(t, "failed", state, "photo %s: its message is in the DLQ", id)
	}
}

// Without a filter, a redrive on a server without StartMessageMoveTask
// (fauxqs) moves every message batch by batch.
func TestRedriveWithoutMoveTasksMovesBatches(t *testing.T) {
	t.Parallel()
	testenv.SkipOnSQS(t, testenv.SQSLocalAWSSQS, "it has StartMessageMoveTask: TestRedriveMovesTheQueueWithAMessageMoveTask covers that path")
	env := testenv.New(t, testenv.Options{})
	deadLetter(t, env, 12)
	res, err := dlq.Redrive(context.Background(), env.Store, env.DLQ, env.Queue, zap.NewNop(), dlq.Options{})
	require.NoError(t, err)
	require.Equal(t, "batches", res.Method)
	require.Equal(t, 14, res.Moved)
	require.Len(t, mainIDs(t, env), 14)
}

// What `migratectl dlq redrive` does on AWS without a filter: one
// StartMessageMoveTask for the whole DLQ, waited for, then the ledger marks
// the photos enqueued again.
func TestRedriveMovesTheQueueWithAMessageMoveTask(t *testing.T) {
	t.Parallel()
	testenv.SkipOnSQS(t, testenv.SQSFauxqs, "fauxqs 2.4.1 has no StartMessageMoveTask (run it with KEYMIGRATE_SQS=local-aws-sqs)")
	env := testenv.New(t, testenv.Options{})
	ids := deadLetter(t, env, 12)
	ctx := context.Background()

	res, err := dlq.Redrive(ctx, env.Store, env.DLQ, env.Queue, zap.NewNop(), dlq.Options{})
	require.NoError(t, err)
	require.Equal(t, "move-task", res.Method)
	require.NotEmpty(t, res.TaskID)
	require.Equal(t, 14, res.Moved)

	got := mainIDs(t, env)
	require.Len(t, got, 14, "every dead letter is back in the main queue, once")
	for _, n := range got {
		require.Equal(t, 1, n)
	}
	d, err := env.DLQ.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, d.Total(), "the DLQ is empty")
	for _, id := range ids {
		state := ledgertest.PhotoMoveOf(t, env.Store, id).State
		require.Equal(t, "enqueued", state, "photo %s: its message is back in the main queue", id)
	}
	l, err := dlq.List(ctx, env.Store, env.DLQ, "", 5, 100)
	require.NoError(t, err)
	require.Zero(t, l.Accounted, "redriven messages leave the listing")
}

// Workers that fail the photos again while the move task runs put them back
// in the DLQ before the redrive marks the ledger: those new dead letters
// must stay listed (and their photos failed), since they are in the DLQ.
func TestMoveTaskRedriveKeepsPhotosThatFailedAgainListed(t *testing.T) {
	t.Parallel()
	testenv.SkipOnSQS(t, testenv.SQSFauxqs, "fauxqs 2.4.1 has no StartMessageMoveTask (run it with KEYMIGRATE_SQS=local-aws-sqs)")
	env := testenv.New(t, testenv.Options{})
	ids := deadLetter(t, env, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := worker.DefaultConfig()
	c.WaitTime = time.Second
	c.ControlInterval = 500 * time.Millisecond
	w := worker.New(env.Store, env.Objects, env.Queue, env.DLQ, zap.NewNop(), c)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()

	res, err := dlq.Redrive(ctx, env.Store, env.DLQ, env.Queue, zap.NewNop(), dlq.Options{})
	require.NoError(t, err)
	require.Equal(t, "move-task", res.Method)
	require.Equal(t, len(ids)+2, res.Moved)
	require.Eventually(t, func() bool {
		d, err := env.DLQ.Depth(ctx)
		return err == nil && d.Total() == int64(len(ids))+2
	}, 30*time.Second, 200*time.Millisecond, "the workers failed them again")
	stop()
	require.NoError(t, <-done)
	done <- nil // for the deferred stop
	l, err := dlq.List(ctx, env.Store, env.DLQ, "", 5, 100)
	require.NoError(t, err)
	require.EqualValues(t, len(ids)+2, l.Accounted, "the DLQ's messages are all listed")
	for _, id := range ids {
		state := ledgertest.PhotoMoveOf(t, env.Store, id).State
		require.Equal(t, "failed", state, "photo %s: its message is in the DLQ", id)
	}
}
