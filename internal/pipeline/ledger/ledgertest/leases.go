package ledgertest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// PassShard is a shard of an operator pass (keymigrate.pass_cursors) as
// tests read it: who holds its lease and where its cursor is ("" and nil
// when nobody / not started).
type PassShard struct {
	Holder string
	Cursor *string
}

// PassShardOf reads shard of shards of pass (every scope; a test runs one).
func PassShardOf(t testing.TB, st *ledger.Store, pass ledger.Pass, shard, shards int) PassShard {
	t.Helper()
	var p PassShard
	var h *string
	require.NoError(t, st.Pool().QueryRow(context.Background(), `SELECT holder, cursor FROM keymigrate.pass_cursors
 WHERE pass = $1 AND shard = $2 AND shards = $3`, pass, shard, shards).Scan(&h, &p.Cursor), "pass shard %s %d/%d", pass, shard, shards)
	if h != nil {
		p.Holder = *h
	}
	return p
}

// LapseLeases makes every lease of pass lapse now, as a holder that died a
// while ago leaves it (set, not slept: a loaded machine must not decide it).
func LapseLeases(t testing.TB, st *ledger.Store, pass ledger.Pass) {
	t.Helper()
	exec(t, st, `UPDATE keymigrate.pass_cursors SET lease_until = now() - interval '1 second' WHERE pass = $1`, pass)
}

// HandLeasesTo gives every lease of pass to holder for d, as another
// process that took over a lapsed lease leaves it.
func HandLeasesTo(t testing.TB, st *ledger.Store, pass ledger.Pass, holder string, d time.Duration) {
	t.Helper()
	exec(t, st, `UPDATE keymigrate.pass_cursors SET holder = $2, lease_until = now() + $3 * interval '1 second' WHERE pass = $1`, pass, holder, seconds(d))
}
