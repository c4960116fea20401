package ledger_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The Go type and the schema's CHECK constraint name the same states.
func TestStatesAreTheSchemasStates(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	var def string
	require.NoError(t, env.Store.Pool().QueryRow(context.Background(), `
SELECT pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conname = 'photo_moves_state_check' AND conrelid = 'keymigrate.photo_moves'::regclass`).Scan(&def))
	var schema []string
	for _, m := range regexp.MustCompile(`'([a-z_]+)'`).FindAllStringSubmatch(def, -1) {
		schema = append(schema, m[1])
	}
	var code []string
	for _, s := range ledger.States() {
		require.True(t, s.Valid())
		code = append(code, string(s))
	}
	slices.Sort(schema)
	slices.Sort(code)
	require.Equal(t, schema, code, "ledger.States() and the schema's CHECK constraint (%s) disagree", def)
	require.False(t, ledger.State("migrate").Valid())
}

// Every state the ledger's own SQL names is a declared state: a typo in a
// statement ('rolledback') would otherwise match nothing, silently.
func TestTheLedgersSQLNamesOnlyDeclaredStates(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	// state = 'x', state <> 'x', state IN ('x', 'y'), state NOT IN (...)
	re := regexp.MustCompile(`state\s*(?:=|<>|!=|(?:NOT\s+)?IN\s*\()\s*((?:'[a-z_]+'\s*,?\s*)+)`)
	lit := regexp.MustCompile(`'([a-z_]+)'`)
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			for _, l := range lit.FindAllStringSubmatch(m[1], -1) {
				seen++
				require.True(t, ledger.State(l[1]).Valid(), "%s: SQL names state %q, which ledger.States() does not declare", f, l[1])
			}
		}
	}
	require.Greater(t, seen, 20, "the scan found the statements' states")
}
