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
	for i := 1; i <= 2; i++ {
		msgs, err := env.Queue.Receive(ctx, 1, 2*time.Second, 30*time.Second)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, i, msgs[0].ReceiveCount)
		require.NoError(t, env.Queue.ChangeVisibility(ctx, msgs[0].ReceiptHandle, 0))
	}
	msgs, err := env.Queue.Receive(ctx, 1, time.Second, 30*time.Second)
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
	d, err := env.Queue.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 10, d.Visible)
}
