package dlq

import (
	"context"

	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

// Hooks are the points where a test steps into a redrive that moves batches.
type Hooks struct {
	// AfterBatch runs after each moved batch (tests interrupt here).
	AfterBatch func(moved int)
	// AfterSend runs after a batch is in the main queue and before the ledger
	// records the move (tests put a worker here).
	AfterSend func()
}

// RedriveHooked is Redrive with the test's hooks.
func RedriveHooked(ctx context.Context, st *ledger.Store, dlq, main *queue.Queue, log *zap.Logger, o Options, h Hooks) (Result, error) {
	return redrive(ctx, st, dlq, main, log, o, hooks{afterBatch: h.AfterBatch, afterSend: h.AfterSend})
}
