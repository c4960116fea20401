package worker

import (
	"context"
	"time"
)

// every calls fn every interval until ctx ends, the first time one interval
// after it is called. It is the shape of the worker's periodic loops (the
// control record, the dependency probe, the lost-message sweeper, a photo's
// visibility heartbeat); fn is never called once every has seen ctx end, and
// every returns only after fn returned.
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
