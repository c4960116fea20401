package soak

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
)

// Evidence must find a violation's photo in the application's table and in
// the ledger (found by their columns, not named), and its key's rows, and
// nothing about another photo.
func TestEvidenceHoldsTheDatabasesRowsForAViolation(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	id, other, owner := uuid.NewString(), uuid.NewString(), uuid.NewString()
	job := uuid.NewString()
	orig := "uploaded/" + job + ".jpg"
	env.InsertPhoto(t, id, &owner, orig, nil, nil)
	env.InsertPhoto(t, other, &owner, "uploaded/"+uuid.NewString()+".jpg", nil, nil)
	require.NoError(t, env.Store.PurgeBegin(ctx, id, map[string]string{orig: `"e1"`}, map[string]int64{orig: 1}))

	var b bytes.Buffer
	require.NoError(t, Evidence(ctx, env.Store.Pool(), &b, []Violation{{Invariant: InvLegacyKept, PhotoID: id, Key: orig}}))
	out := b.String()
	t.Log(out)
	require.Contains(t, out, "== photo "+id)
	require.Contains(t, out, "== key "+orig)
	var app, ledger, byKey bool
	section := ""
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "== "):
			section = l
		case strings.Contains(l, ".photos (id): ") && strings.Contains(l, owner):
			app = true
		case strings.HasPrefix(l, "keymigrate.") && strings.Contains(l, "(photo_id)") && strings.HasPrefix(section, "== photo"):
			ledger = true
		case strings.HasPrefix(section, "== key") && strings.Contains(l, orig):
			byKey = true
		}
	}
	require.True(t, app, "the application's row")
	require.True(t, ledger, "a ledger row of the photo")
	require.True(t, byKey, "a row holding the key")
	require.NotContains(t, out, other, "another photo's rows")
}
