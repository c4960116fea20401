package soak

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// copy_paths fails a run that was to soak copy first and committed no move
// proven by the read of its source after the copy, and a careful-only run
// that committed one; a run with both passes, and the report counts each
// path's objects and photos. (A check that can fail: the soak's own runs
// never failed it.)
func TestCopyPathsFailsARunThatDidNotSoakCopyFirst(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	move := func(photo, newKey, method string) {
		ledgertest.RecordCommittedMove(t, env.Store, photo, newKey, method)
	}
	run := func(mode string, possible bool) (*Report, []Violation) {
		paths, err := CopyPaths(mode)
		require.NoError(t, err)
		r := &Runner{cfg: Config{CopyFirst: mode}, env: env, copyFirstPossible: possible,
			fleet: NewMixedFleet(nil, 0, 0, paths, nil)}
		rep := &Report{}
		require.NoError(t, r.checkCopyPaths(ctx, rep))
		return rep, r.violations
	}

	move("p1", "users/u/raw/p1/original.jpg", "etag")
	move("p1", "users/u/thumbs/p1.jpg", "checksum:CRC32")
	rep, vs := run(CopyFirstMixed, true)
	require.Len(t, vs, 1, "a mixed run with careful moves only did not soak copy first")
	require.Equal(t, InvCopyPaths, vs[0].Invariant)
	require.Contains(t, vs[0].Detail, "copy first was not soaked")
	require.Equal(t, 2, rep.CopyPaths["careful_objects"])
	require.Equal(t, 1, rep.CopyPaths["careful_photos"])
	_, vs = run(CopyFirstOn, true)
	require.Len(t, vs, 1)
	_, vs = run(CopyFirstOff, true)
	require.Empty(t, vs, "a careful-only run")
	rep, vs = run(CopyFirstMixed, false)
	require.Empty(t, vs, "a server whose probe rules copy first out: noted, not failed")
	require.NotEmpty(t, rep.Notes)

	move("p2", "users/u/raw/p2/original.jpg", "etag (copy response, source read after the copy)")
	move("p2", "users/u/thumbs/p2.jpg", "checksum:CRC32 (copy response, source read after the copy)")
	move("p3", "users/u/thumbs/p3.jpg", "etag (copy response, source read after the copy)")
	rep, vs = run(CopyFirstMixed, true)
	require.Empty(t, vs, "both paths moved something")
	require.Equal(t, map[string]int{"copy_first_objects": 3, "copy_first_photos": 2, "careful_objects": 2, "careful_photos": 1, "copy_first_possible": 1}, rep.CopyPaths)
	_, vs = run(CopyFirstOff, true)
	require.Len(t, vs, 1, "a careful-only run that committed copy-first moves")
	require.Contains(t, vs[0].Detail, "careful workers only")
}
