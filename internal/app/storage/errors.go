package storage

import (
	"errors"
	"fmt"

	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// ErrForbidden is wrapped by every refusal to act on a user's behalf: a
// malformed user or photo id, a key outside the acting user's prefix (another
// user's, a legacy one, or one that only looks inside after normalisation), a
// photo row the user does not own. Test with errors.Is; errors.As with
// *AccessError says why.
var ErrForbidden = errors.New("forbidden")

// ErrInvalidRequest is wrapped by errors about a request that is well-formed
// for the acting user but that the service does not allow: a content type that
// is not an image, an expiry longer than the maximum, a size range outside the
// configured one.
var ErrInvalidRequest = errors.New("invalid request")

// ErrNotFound is objstore.ErrNotFound: the object (or, for Resolve, the row's
// column) does not exist.
var ErrNotFound = objstore.ErrNotFound

// Reason says why an AccessError refused a request.
type Reason string

// The reasons for refusing a request.
const (
	// ReasonInvalidUser: the acting user's id is not a UUID or a positive
	// decimal integer (empty, overlong, path characters, look-alikes...).
	ReasonInvalidUser Reason = "invalid user id"
	// ReasonInvalidObject: a photo id, extension, animation id or suffix would
	// not build a key of the layout.
	ReasonInvalidObject Reason = "invalid object name"
	// ReasonOtherUser: the key is under another user's prefix.
	ReasonOtherUser Reason = "another user's object"
	// ReasonOutsidePrefix: the key is not under users/ at all (a legacy key,
	// or anything else).
	ReasonOutsidePrefix Reason = "outside the user's prefix"
	// ReasonUnsafeKey: the key starts with the user's prefix but is not a key
	// of the layout: "..", ".", empty segments, encoded separators, control or
	// non-ASCII characters, or an unknown shape.
	ReasonUnsafeKey Reason = "not a key of the layout"
	// ReasonNotOwner: the photo row belongs to another user, or to nobody.
	ReasonNotOwner Reason = "not the photo's owner"
)

// AccessError is the refusal of one operation for one acting user. It wraps
// ErrForbidden and, where there is one, the key layout's error
// (keylayout.ErrInvalidID, keylayout.ErrUnsafeKey).
type AccessError struct {
	// Op is the operation refused: "put", "get", "head", "delete",
	// "delete photo", "list", "resolve", "presign upload", "presign download".
	Op string
	// UserID is the acting user's id as given (possibly malformed).
	UserID string
	// Target is the key, photo id or cursor that was refused, if any.
	Target string
	// Reason is why.
	Reason Reason
	// Err is the underlying error from the key layout, if any.
	Err error
}

// Error says which operation was refused for whom, on what and why.
func (e *AccessError) Error() string {
	msg := fmt.Sprintf("storage: %s refused for user %q: %s", e.Op, e.UserID, e.Reason)
	if e.Target != "" {
		msg += fmt.Sprintf(" (%q)", e.Target)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap lets errors.Is match both ErrForbidden and the layout's error.
func (e *AccessError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrForbidden}
	}
	return []error{ErrForbidden, e.Err}
}

func refuse(op, userID, target string, reason Reason, err error) error {
	return &AccessError{Op: op, UserID: userID, Target: target, Reason: reason, Err: err}
}
