package worker

import (
	"context"
	"time"
)

// every calls fn every interval until ctx ends, the first time one interval
// after it is called, and returns once ctx ended and fn is not running. It is
// the shape of the worker's periodic loops (the control record, the
// dependency probe, the lost-message sweeper, a photo's visibility
// heartbeat). A tick that comes as ctx ends may still call fn once, so fn
// checks ctx where that matters.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
