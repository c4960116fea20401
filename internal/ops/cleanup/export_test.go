package cleanup

import "context"

// Hooks are the points at which cleanup's tests act on a page of legacy
// objects, given their keys. They live here, in a file only `go test`
// compiles, so that the Options a user fills in carry no test signal.
type Hooks struct {
	// BeforeDelete runs after the checks, before the rows are read again and
	// the delete is claimed.
	BeforeDelete func(ctx context.Context, keys []string) error
	// AfterClaim runs after the delete was claimed, before the rows are read
	// once more and the objects deleted.
	AfterClaim func(ctx context.Context, keys []string) error
	// AfterDelete runs between the delete and its record.
	AfterDelete func(ctx context.Context, keys []string) error
}

// WithHooks returns o with h installed.
func WithHooks(o Options, h Hooks) Options {
	o.hooks = hooks{beforeDelete: h.BeforeDelete, afterClaim: h.AfterClaim, afterDelete: h.AfterDelete}
	return o
}
