package producer

import (
	"errors"
	"fmt"
)

// The producer's refusals of its configuration describe the condition, not
// the flag that set it: cmd/producer tells them in its flags' words. Callers
// tell them apart with errors.Is and errors.As.

// ErrShardWithListOrLimit refuses a sharded run of a photo list or with a
// limit: shards split the photos table, not a list or a count.
var ErrShardWithListOrLimit = errors.New("a sharded run cannot select a photo list or a limit: shards split the photos table, not a list or a count")

// ErrNewShardedRunWithoutID refuses to start a new sharded run without a
// run id: every shard's producer must name the same run.
var ErrNewShardedRunWithoutID = errors.New("a new sharded run needs a run id: every shard's producer must name the same run")

// ErrEmptyPhotoList refuses a photo list that lists no photo id.
var ErrEmptyPhotoList = errors.New("the file lists no photo id; give one id per line, or a CSV with a photo_id column")

// InvalidShardError refuses a shard outside its run's count: the shards of
// a run of Count shards are 0 to Count-1.
type InvalidShardError struct {
	Index, Count int
}

func (e *InvalidShardError) Error() string {
	return fmt.Sprintf("shard %d of %d: a run of n shards has shards 0 to n-1", e.Index, e.Count)
}

// InvalidOwnerError refuses a selected owner id that photos.owner_id cannot
// hold. Err says what is wrong with it.
type InvalidOwnerError struct {
	Owner string
	Err   error
}

func (e *InvalidOwnerError) Error() string {
	return fmt.Sprintf("owner %q: %v; give the owner's id exactly as photos.owner_id holds it", e.Owner, e.Err)
}

// Unwrap returns what is wrong with the owner id.
func (e *InvalidOwnerError) Unwrap() error { return e.Err }

// InvalidLimitError refuses a negative limit.
type InvalidLimitError struct {
	Limit int64
}

func (e *InvalidLimitError) Error() string {
	return fmt.Sprintf("limit %d: give a positive number of photos (0: no limit)", e.Limit)
}

// PhotoListError is any failure of the photo list at Path: it cannot be
// read, some lines are malformed (Err is a *ListError), it lists no photo
// (ErrEmptyPhotoList), or it changed since it was checked.
type PhotoListError struct {
	Path string
	Err  error
}

func (e *PhotoListError) Error() string { return fmt.Sprintf("photo list %s: %v", e.Path, e.Err) }

// Unwrap returns what went wrong with the list.
func (e *PhotoListError) Unwrap() error { return e.Err }
