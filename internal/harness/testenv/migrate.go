package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/producer"
	"github.com/keymigrate/keymigrate/worker"
)

// Migrate runs the producer and one draining worker in-process, so that tests
// of the operations start from a real finished migration.
func (e *Env) Migrate(t testing.TB) producer.Summary {
	t.Helper()
	return e.MigrateWith(t, producer.Config{})
}

// MigrateWith is Migrate with a producer configuration (a staged run's
// selection, say).
func (e *Env) MigrateWith(t testing.TB, cfg producer.Config) producer.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := producer.New(e.Store, e.Queue, zap.NewNop(), cfg).Run(ctx)
	require.NoError(t, err)
	e.drain(ctx, t)
	return s
}

// Drain runs one draining worker in-process until the main queue is empty.
func (e *Env) Drain(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e.drain(ctx, t)
}

func (e *Env) drain(ctx context.Context, t testing.TB) {
	t.Helper()
	c := worker.DefaultConfig()
	c.Concurrency = 8
	c.WaitTime = time.Second
	c.Drain = true
	c.ControlInterval = 500 * time.Millisecond
	require.NoError(t, worker.New(e.Store, e.Objects, e.Queue, e.DLQ, zap.NewNop(), c).Run(ctx))
	require.NoError(t, ctx.Err(), "migration did not finish in time")
}

// Enqueue runs the producer only: every legacy photo is recorded as enqueued
// and has a message in the main queue.
func (e *Env) Enqueue(t testing.TB) producer.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := producer.New(e.Store, e.Queue, zap.NewNop(), producer.Config{}).Run(ctx)
	require.NoError(t, err)
	return s
}
