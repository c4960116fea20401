// Package failure decides, in one place, what a failed unit of work means:
// permanent (dead-letter now), transient (retry later) or shutdown (release the
// message untouched). Callers mark the permanent cases where they know the
// semantics (a 404 on a source object, a malformed message) with Permanent;
// everything else is transient by default, because retrying a permanent failure
// a few times costs little while dead-lettering a transient one costs an
// operator's attention.
package failure

import (
	"context"
	"errors"
	"fmt"
)

// Reason is the short, stable name of a failure, used as the DLQ message
// attribute, in the ledger and in logs. Operators group and filter by it.
type Reason string

// The reasons of permanent failures.
const (
	MalformedMessage    Reason = "malformed_message"
	UnknownPhoto        Reason = "unknown_photo"
	UnrecognisedKey     Reason = "unrecognised_legacy_key"
	SourceMissing       Reason = "source_missing"
	InvalidOwner        Reason = "invalid_owner_id"
	PreconditionFailed  Reason = "precondition_failed"
	VerifyFailed        Reason = "verify_failed"
	SourceUnreadable    Reason = "source_unreadable"
	DestinationConflict Reason = "destination_conflict"
)

// Transient is the reason recorded for failures that are retried.
const Transient Reason = "transient"

// Shutdown is the reason recorded when work was abandoned because the worker is
// stopping; the message is released, not failed.
const Shutdown Reason = "shutdown"

// PermanentError is an error that retrying cannot fix.
type PermanentError struct {
	Reason Reason
	Err    error
}

func (e *PermanentError) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent with reason.
func Permanent(reason Reason, err error) error {
	return &PermanentError{Reason: reason, Err: err}
}

// Permanentf is Permanent with a formatted error.
func Permanentf(reason Reason, format string, args ...any) error {
	return &PermanentError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Classify returns the reason of err and whether it is permanent. A context
// cancellation is Shutdown; an unmarked error is Transient.
func Classify(err error) (Reason, bool) {
	var p *PermanentError
	if errors.As(err, &p) {
		return p.Reason, true
	}
	if errors.Is(err, context.Canceled) {
		return Shutdown, false
	}
	return Transient, false
}
