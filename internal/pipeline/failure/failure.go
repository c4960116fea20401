// Package failure decides, in one place, what a failed unit of work means:
// permanent (dead-letter now), transient (retry later) or shutdown (release the
// message untouched). Callers mark the permanent cases where they know the
// semantics (a 404 on a source object, a malformed message) with Permanent;
// everything else is transient by default, because retrying a permanent failure
// a few times costs little while dead-lettering a transient one costs an
// operator's attention. Among transient failures, Dependency singles out
// outages (a dependency down or throttling), which are not the photo's fault.
package failure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5/pgconn"
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

// RetriesExhausted is the reason of a photo dead-lettered after failing on
// every delivery the queue's redrive policy allows.
const RetriesExhausted Reason = "retries_exhausted"

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

// The dependencies an outage can take away.
const (
	S3       = "s3"
	SQS      = "sqs"
	Postgres = "postgres"
)

// Dependency reports whether err means a dependency is unavailable (down,
// unreachable, overloaded, throttling) rather than something wrong with the
// photo, and which one. A photo that fails only because a dependency is out
// must not spend the receive budget that real failures need: the worker stops
// taking messages instead and hands back what it holds.
func Dependency(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		dep := strings.ToLower(oe.ServiceID)
		if dep != S3 && dep != SQS {
			return "", false
		}
		var ae smithy.APIError
		if errors.As(err, &ae) {
			switch ae.ErrorCode() {
			case "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "ServiceUnavailable", "InternalError":
				return dep, true
			}
		}
		var re *awshttp.ResponseError
		if errors.As(err, &re) {
			// 0: no response at all (connection refused or reset, timeout).
			code := re.HTTPStatusCode()
			return dep, code == 0 || code >= 500 || code == http.StatusTooManyRequests
		}
		if ae != nil {
			return "", false
		}
		// No response at all: the request could not be sent or timed out.
		return dep, true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutting down, starting up
			pe.Code == "53300", // too many connections
			pe.Code == "57014": // statement timeout: the database is overloaded
			return Postgres, true
		}
		return "", false
	}
	// What pgx v5 returns when the database is out of reach: a
	// *pgconn.ConnectError for a connection that could not be made (refused,
	// reset during start-up, timed out), pgconn.ErrConnClosed for a connection
	// the server or the network closed (it is then refused before it is used,
	// so also SafeToRetry), and io.ErrUnexpectedEOF for a connection lost
	// while rows were being read.
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.Is(err, pgconn.ErrConnClosed) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return Postgres, true
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) {
		// Not an AWS call (those carry an OperationError): the database.
		return Postgres, true
	}
	return "", false
}
