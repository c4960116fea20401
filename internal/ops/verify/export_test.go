package verify

import "context"

// Hooks are the points at which verify's tests act on a shard's run. They
// live here, in a file only `go test` compiles, so that the Options a user
// fills in carry no test signal.
type Hooks struct {
	// BeforeSave runs after a page of phase ("objects", "rows", "legacy")
	// was checked, before it is recorded (the shard's cursor and tally
	// moved on).
	BeforeSave func(ctx context.Context, phase string) error
}

// WithHooks returns o with h installed.
func WithHooks(o Options, h Hooks) Options {
	o.hooks = hooks{beforeSave: h.BeforeSave}
	return o
}
