package status_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/status"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

// Case 9: with SQS unreachable, status still shows the ledger's view and marks
// the queue figures as unavailable, instead of failing with only the SQS error.
func TestStatusShowsTheLedgerWhenSQSIsUnreachable(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	env.Seed(t, seed.Options{Photos: 10, Seed: 3})
	env.Migrate(t)
	dead := sqs.NewFromConfig(env.AWS, func(o *sqs.Options) {
		o.BaseEndpoint = aws.String("http://127.0.0.1:1")
		o.RetryMaxAttempts = 1
	})
	src := status.Source{Store: env.Store, Queue: queue.New(dead, env.Queue.URL()), DLQ: queue.New(dead, env.DLQ.URL())}
	s, err := status.Take(ctx, src, 0)
	require.NoError(t, err)
	require.EqualValues(t, 10, s.Done, "the ledger's view is there")
	require.Nil(t, s.Queue)
	require.NotEmpty(t, s.QueueError, "the queue figures are marked unavailable")
	require.NotEmpty(t, s.DLQError)
}

// Case 9: status shows photos the ledger has enqueued while the queue holds no
// message for them (lost messages), and how long nothing has finished.
func TestStatusShowsPhotosWithoutMessages(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	env.Seed(t, seed.Options{Photos: 6, Seed: 4, OwnerlessRate: -1})
	env.Enqueue(t)
	_, err := env.SQS.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(env.Queue.URL())})
	require.NoError(t, err)
	s, err := status.Take(ctx, status.Source{Store: env.Store, Queue: env.Queue, DLQ: env.DLQ}, 0)
	require.NoError(t, err)
	require.EqualValues(t, 6, s.Open, "photos the ledger waits on")
	require.EqualValues(t, 0, s.Queue.Total())
	require.EqualValues(t, 6, s.Unaccounted, "photos with no message the queue could be holding")
}

// A producer run that failed (an SQS outage mid-run) recorded photos it never
// sent: status names the unfinished run, so the operator knows to rerun it
// rather than wait for the sweeper.
func TestStatusNamesAProducerRunThatDidNotFinish(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	env.Seed(t, seed.Options{Photos: 3, Seed: 5})
	run, _, err := env.Store.RunStart(ctx, "", "run-interrupted", nil)
	require.NoError(t, err)
	s, err := status.Take(ctx, status.Source{Store: env.Store, Queue: env.Queue, DLQ: env.DLQ}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{run.ID}, s.UnfinishedRuns)

	require.NoError(t, env.Store.RunFinish(ctx, run.ID))
	s, err = status.Take(ctx, status.Source{Store: env.Store, Queue: env.Queue, DLQ: env.DLQ}, 0)
	require.NoError(t, err)
	require.Empty(t, s.UnfinishedRuns)
}
