package main

import (
	"errors"
	"fmt"

	"github.com/keymigrate/keymigrate/producer"
)

// flagError is an error of the producer library told in the words of the
// flag that caused it. The library's error stays in the chain, for
// errors.Is and errors.As.
type flagError struct {
	text string
	err  error
}

func (e *flagError) Error() string { return e.text }
func (e *flagError) Unwrap() error { return e.err }

// inFlagTerms tells the producer's refusals of its configuration in the words
// of the flags that set it: which flag, what was wrong, what to do. Other
// errors are returned as they are.
func inFlagTerms(err error) error {
	var (
		shard *producer.InvalidShardError
		owner *producer.InvalidOwnerError
		limit *producer.InvalidLimitError
		list  *producer.PhotoListError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &shard):
		return &flagError{fmt.Sprintf("--shard %d/%d: give i/n with 0 <= i < n", shard.Index, shard.Count), err}
	case errors.Is(err, producer.ErrShardWithListOrLimit):
		return &flagError{"--shard cannot be combined with --photos-from or --limit: shards split the photos table, not a list or a count", err}
	case errors.Is(err, producer.ErrNewShardedRunWithoutID):
		return &flagError{"--new-run with --shard needs --run-id: every shard's producer must name the same run", err}
	case errors.As(err, &owner):
		return &flagError{fmt.Sprintf("--owner %q: %v; give the owner's id exactly as photos.owner_id holds it", owner.Owner, owner.Err), err}
	case errors.As(err, &limit):
		return &flagError{fmt.Sprintf("--limit %d: give a positive number of photos (0: no limit)", limit.Limit), err}
	case errors.As(err, &list):
		return &flagError{fmt.Sprintf("--photos-from %s: %v", list.Path, list.Err), err}
	}
	return err
}
