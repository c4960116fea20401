package ledger_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// A shard's cursor survives its process: joining again returns where it
// stopped, and a finished shard stays finished.
func TestPassCursorsResumeAndFinish(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	st := env.Store
	_, err := st.PassCursorJoin(ctx, ledger.PassVerify, "", 2, 2)
	var se *ledger.ShardError
	require.ErrorAs(t, err, &se)

	c, err := st.PassCursorJoin(ctx, ledger.PassVerify, "", 0, 2)
	require.NoError(t, err)
	require.Empty(t, c.Cursor)
	require.False(t, c.Done())
	require.NoError(t, st.PassCursorAdvance(ctx, c, "k10", map[string]int{"checked": 10}))
	again, err := st.PassCursorJoin(ctx, ledger.PassVerify, "", 0, 2)
	require.NoError(t, err)
	require.Equal(t, "k10", again.Cursor)
	var tally map[string]int
	require.NoError(t, json.Unmarshal(again.Tally, &tally))
	require.Equal(t, 10, tally["checked"])

	require.NoError(t, st.PassCursorFinish(ctx, again, map[string]int{"checked": 12}))
	require.NoError(t, st.PassCursorAdvance(ctx, again, "k99", map[string]int{"checked": 99}), "a late advance of a finished shard changes nothing")
	done, err := st.PassCursorJoin(ctx, ledger.PassVerify, "", 0, 2)
	require.NoError(t, err)
	require.True(t, done.Done())
	require.Equal(t, "k10", done.Cursor)

	other, err := st.PassCursorJoin(ctx, ledger.PassVerify, "", 0, 4)
	require.NoError(t, err)
	require.Empty(t, other.Cursor, "another shard count is another pass")

	list, err := st.PassCursorList(ctx, ledger.PassVerify, "", 2)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.NoError(t, st.PassCursorReset(ctx, ledger.PassVerify, "", 2))
	list, err = st.PassCursorList(ctx, ledger.PassVerify, "", 2)
	require.NoError(t, err)
	require.Empty(t, list)
}
