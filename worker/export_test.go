package worker

import "context"

// Hooks are the points at which the worker's tests act on a photo in hand.
// They live here, in a file only `go test` compiles, so that the
// configuration a user fills in (Config) carries no test signal.
type Hooks struct {
	// BeforeLoad runs after the photo was marked in progress, before its row
	// is read.
	BeforeLoad func(ctx context.Context, photoID string) error
	// AfterCopy runs after each object was copied, before it is verified.
	AfterCopy func(ctx context.Context, photoID, newKey string) error
	// BeforeSwap runs after every move was verified, before the transaction.
	BeforeSwap func(ctx context.Context, photoID string) error
}

// SetHooks installs h on w, which must not be running yet, and returns w.
func SetHooks(w *Worker, h Hooks) *Worker {
	w.hooks = hooks{beforeLoad: h.BeforeLoad, afterCopy: h.AfterCopy, beforeSwap: h.BeforeSwap}
	return w
}
