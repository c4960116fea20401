package queue

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	m := Message{PhotoID: "0b7e2d61-9c4f-4a3e-b2d1-5e6f7a8b9c0d", RunID: "run-1"}
	body := Encode(m)
	require.JSONEq(t, `{"v":1,"photo_id":"0b7e2d61-9c4f-4a3e-b2d1-5e6f7a8b9c0d","run_id":"run-1"}`, body)
	got, err := Decode(body)
	require.NoError(t, err)
	require.Equal(t, Message{V: 1, PhotoID: m.PhotoID, RunID: "run-1"}, got)
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		"", "not json", "{}", `[]`,
		`{"v":2,"photo_id":"1","run_id":"r"}`,
		`{"v":1,"photo_id":"../1","run_id":"r"}`,
		`{"v":1,"photo_id":"","run_id":"r"}`,
		`{"v":1,"photo_id":"1","run_id":""}`,
		`{"v":1,"photo_id":"1","run_id":"r","extra":true}`,
		`{"v":1,"photo_id":"1","run_id":"r"} {}`,
		`{"v":"1","photo_id":"1","run_id":"r"}`,
	} {
		_, err := Decode(body)
		require.Error(t, err, body)
		require.True(t, errors.Is(err, ErrMalformed), body)
	}
}
