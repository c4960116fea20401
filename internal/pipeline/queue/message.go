// Package queue is the migration's view of SQS: the message format, batched
// sends that retry only what failed, receives, visibility changes,
// dead-lettering with a reason, and queue setup with a redrive policy.
package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// Version is the message format version this build writes and reads.
const Version = 1

// Message asks a worker to migrate one photo. It carries no keys: the photos
// row is the source of truth, so a message never goes stale and may be
// delivered any number of times.
type Message struct {
	V       int    `json:"v"`
	PhotoID string `json:"photo_id"`
	RunID   string `json:"run_id"`
	// Repair asks the worker to copy again the new copies of this migrated
	// photo that have gone missing. Only an operator sets it (`migratectl
	// verify --requeue --repair`): by default a missing copy is the
	// application's deletion, and a deletion is final.
	Repair bool `json:"repair,omitempty"`
}

// Encode renders m as the message body.
func Encode(m Message) string {
	m.V = Version
	b, _ := json.Marshal(m) // a struct of ints and strings cannot fail to marshal
	return string(b)
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed message")

// Decode parses and validates a message body.
func Decode(body string) (Message, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(body)))
	dec.DisallowUnknownFields()
	var m Message
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Message{}, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	if m.V != Version {
		return Message{}, fmt.Errorf("%w: version %d, this worker reads version %d", ErrMalformed, m.V, Version)
	}
	if err := keylayout.ValidateID(m.PhotoID); err != nil {
		return Message{}, fmt.Errorf("%w: photo_id: %v", ErrMalformed, err)
	}
	if m.RunID == "" {
		return Message{}, fmt.Errorf("%w: run_id is empty", ErrMalformed)
	}
	return m, nil
}
