package ledger

// State is where a photo stands in the migration: the state column of
// keymigrate.photo_moves. The constants below are its only values, and they
// are exactly the schema's CHECK constraint (TestStatesAreTheSchemasStates
// reads the constraint back from Postgres and compares). Code outside this
// package compares states with these constants or the methods below, never
// with string literals.
type State string

// The states a photo goes through.
const (
	// StateEnqueued: the producer sent the photo's message.
	StateEnqueued State = "enqueued"
	// StateInProgress: a worker took a delivery of it.
	StateInProgress State = "in_progress"
	// StateMigrated: its row points at its own verified copies.
	StateMigrated State = "migrated"
	// StateArchived: it has no owner; set aside for manual review.
	StateArchived State = "archived"
	// StateFailed: dead-lettered; last_reason says why.
	StateFailed State = "failed"
	// StateRolledBack: swapped back to its legacy keys by the operator.
	StateRolledBack State = "rolled_back"
	// StateCleaned: migrated, and cleanup deleted the legacy objects it alone needed.
	StateCleaned State = "cleaned"
	// StateDeleted: the application deleted the photo's row.
	StateDeleted State = "deleted"
	// StatePurged: archived, and `archived purge` deleted its legacy objects.
	StatePurged State = "purged"
)

// States lists every state in the order status shows them.
func States() []State {
	return []State{StateEnqueued, StateInProgress, StateMigrated, StateArchived, StateFailed,
		StateRolledBack, StateCleaned, StateDeleted, StatePurged}
}

// Valid reports whether s is one of the states above.
func (s State) Valid() bool {
	for _, v := range States() {
		if s == v {
			return true
		}
	}
	return false
}

// Moved reports whether the photo's row points at its own verified copies
// (migrated, or migrated and cleaned).
func (s State) Moved() bool { return s == StateMigrated || s == StateCleaned }

// Open reports whether the photo is waiting for, or in the hands of, a worker.
func (s State) Open() bool { return s == StateEnqueued || s == StateInProgress }

// Stopped reports whether no worker may move the photo any more: the
// operator rolled it back (final until a new run) or the application deleted it.
func (s State) Stopped() bool { return s == StateRolledBack || s == StateDeleted }

// Finished reports whether the photo needs no more work from the fleet
// (moved or set aside as archived).
func (s State) Finished() bool { return s.Moved() || s == StateArchived }
