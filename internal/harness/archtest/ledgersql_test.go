package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ledgerDir is the one tree whose Go files may hold SQL naming the ledger's
// tables (keymigrate.*): the ledger, and ledgertest for other packages' tests
// (issue 19: no package other than the ledger queries its tables).
const ledgerDir = "internal/pipeline/ledger"

// ledgerSQLExceptions are the files outside ledgerDir allowed SQL naming a
// ledger table, each with its reason; a key ending in "/" is a folder. The list may only shrink: the test
// fails on an offender not here, and on an entry that no longer offends.
var ledgerSQLExceptions = map[string]string{
	"internal/harness/synths3/load.go":       "the synthetic bucket's bulk loader writes the ledger's tables in bulk (COPY, millions of rows) by design",
	"internal/harness/synths3/load_test.go":  "tests of the bulk loader compare the rows it wrote with those a fleet writes, column for column",
	"internal/harness/synths3/fleet_test.go": "tests of the bulk loader compare the rows it wrote with those a fleet writes, column for column",
	"deploy/postgres/grants_test.go":         "tests the database roles: km_app must be refused the ledger as a role, on its own connection",
	"cmd/migratectl/status.go":               "a notice that shows the operator the query listing the objects; text, not run",
}

func TestOnlyTheLedgerQueriesItsTables(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	tables := ledgerTables(t, root)
	offenders := findLedgerSQL(t, root, tables)

	excepted := func(file string) (string, bool) {
		for key := range ledgerSQLExceptions {
			if file == key || (strings.HasSuffix(key, "/") && strings.HasPrefix(file, key)) {
				return key, true
			}
		}
		return "", false
	}
	var unexpected []string
	used := map[string]bool{}
	for file, where := range offenders {
		if key, ok := excepted(file); ok {
			used[key] = true
		} else {
			unexpected = append(unexpected, where...)
		}
	}
	reportAgainst(t, "SQL naming the ledger's tables outside "+ledgerDir+"; use a Store method, or a ledgertest helper in a test", unexpected, ledgerSQLExceptions, used)
}

// eachStringLiteral calls fn with every string literal under n and its
// unquoted value (the source checks read what a literal says, not how it is
// quoted).
func eachStringLiteral(n ast.Node, fn func(lit *ast.BasicLit, s string)) {
	ast.Inspect(n, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				fn(lit, s)
			}
		}
		return true
	})
}

// ledgerTables are the tables the ledger's migrations create, as a pattern
// matching SQL that names one: after a keyword that takes a table (FROM,
// JOIN, INTO, UPDATE, TABLE, VACUUM, ANALYZE, TRUNCATE), or quoted as a
// relation ('keymigrate.t'::regclass). Prose naming a table (a command's
// help, a report's label) does not match. A name put together at run time
// (fmt.Sprintf of a table list) is not seen: that is a limit of a source
// check, and the exceptions below hold the one file that does it.
func ledgerTables(t *testing.T, root string) *regexp.Regexp {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, ledgerDir, "migrations", "*.sql"))
	require.NoError(t, err)
	create := regexp.MustCompile(`(?i)CREATE (?:UNLOGGED )?TABLE (?:IF NOT EXISTS )?keymigrate\.(\w+)`)
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range create.FindAllStringSubmatch(string(b), -1) {
			names = append(names, m[1])
		}
	}
	require.GreaterOrEqual(t, len(names), 10, "too few ledger tables found in %s/migrations", ledgerDir)
	// goose's own table lives in the schema too.
	names = append(names, "schema_version")
	return regexp.MustCompile(`(?i)(\b(from|join|into|update|table|vacuum|analyze|truncate)\s+|')keymigrate\.(` + strings.Join(names, "|") + `)\b`)
}

// findLedgerSQL parses every .go file of the module (tests included) outside
// ledgerDir and returns, by file, the string literals that are SQL naming a
// ledger table.
func findLedgerSQL(t *testing.T, root string, tables *regexp.Regexp) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	files := 0
	fset := token.NewFileSet()
	err := eachGoFile(root, ".", ledgerDir, func(rel, path string) error {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		eachStringLiteral(f, func(lit *ast.BasicLit, s string) {
			if m := tables.FindString(s); m != "" {
				out[rel] = append(out[rel], fmt.Sprintf("%s:%d: %s", rel, fset.Position(lit.Pos()).Line, m))
			}
		})
		return nil
	})
	require.NoError(t, err, "walk the module")
	require.Greater(t, files, 100, "too few files parsed: is the walk finding the sources?")
	return out
}
