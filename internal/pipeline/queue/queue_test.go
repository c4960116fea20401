package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
)

func TestRedrivePolicyMovesExhaustedMessagesToTheDLQ(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{MaxReceiveCount: 2})
	ctx := context.Background()
	require.NoError(t, env.Queue.SendBatch(ctx, []string{"a"}, 5*time.Second))
	// Each delivery is left to time out (one second) rather than released
	// with ChangeMessageVisibility, which local-aws-sqs counts as a receive.
	for i := 1; i <= 2; i++ {
		msgs, err := env.Queue.Receive(ctx, 1, 3*time.Second, time.Second)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, i, msgs[0].ReceiveCount, "the receive count is read (local-aws-sqs: only through the deprecated AttributeNames)")
	}
	msgs, err := env.Queue.Receive(ctx, 1, 3*time.Second, 30*time.Second)
	require.NoError(t, err)
	require.Empty(t, msgs, "after maxReceiveCount deliveries the message leaves the main queue")
	dead, err := env.DLQ.Receive(ctx, 1, 2*time.Second, 30*time.Second)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, "a", dead[0].Body)
}

func TestSendBatchSendsAll(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	bodies := make([]string, 10)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("m%d", i)
	}
	require.NoError(t, env.Queue.SendBatch(ctx, bodies, 5*time.Second))
	require.Error(t, env.Queue.SendBatch(ctx, append(bodies, "eleven"), time.Second), "SQS takes 10 per batch")
	// The counts are approximate and may lag a send, on SQS as on
	// local-aws-sqs (there a message sent counts as delayed for a moment).
	require.Eventually(t, func() bool {
		d, err := env.Queue.Depth(ctx)
		return err == nil && d.Visible == 10
	}, 10*time.Second, 50*time.Millisecond, "all ten messages visible")
}

// The worker's heartbeat extends a message's visibility while its photo is
// copied, and releases a failed one with a delay: neither spends a receive on
// SQS, where only deliveries count toward maxReceiveCount.
func TestChangingVisibilitySpendsNoReceive(t *testing.T) {
	t.Parallel()
	testenv.SkipOnSQS(t, testenv.SQSLocalAWSSQS, "local-aws-sqs 2.0.2 counts every ChangeMessageVisibility as a receive")
	env := testenv.New(t, testenv.Options{MaxReceiveCount: 2})
	ctx := context.Background()
	require.NoError(t, env.Queue.SendBatch(ctx, []string{"a"}, 5*time.Second))
	msgs, err := env.Queue.Receive(ctx, 1, 2*time.Second, 30*time.Second)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	for range 3 {
		require.NoError(t, env.Queue.ChangeVisibility(ctx, msgs[0].ReceiptHandle, 30*time.Second))
	}
	require.NoError(t, env.Queue.ChangeVisibility(ctx, msgs[0].ReceiptHandle, 0))
	again, err := env.Queue.Receive(ctx, 1, 2*time.Second, 30*time.Second)
	require.NoError(t, err)
	require.Len(t, again, 1, "four visibility changes did not exhaust a maxReceiveCount of 2")
	require.Equal(t, 2, again[0].ReceiveCount)
}
