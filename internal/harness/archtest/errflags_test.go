package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// cliDirs are the product folders that speak the command line's language:
// the mains, and the wiring they share (flags, configuration, connections,
// the CLI preamble: docs/architecture.md).
var cliDirs = []string{"cmd/", "internal/wiring/"}

// flagPattern is a command-line flag (--new-run) in a message.
var flagPattern = regexp.MustCompile(`(^|[\s(` + "`" + `'"])--[a-z][a-z0-9-]+`)

// errFlagExceptions are the error texts allowed to name a flag for now,
// keyed by file and flag ("path/file.go --flag"), each with its reason. The
// list may only shrink: the test fails on an entry that no longer offends.
var errFlagExceptions = map[string]string{}

// Issue 19: library errors describe the condition; the command line, which
// knows its flags, words it in their terms (cli.WordedError). A library's
// error that names a flag (--new-run) is wrong for every other caller: a
// test, another command, an operator of the library. The check reads the
// string literals of errors.New and fmt.Errorf calls and of Error() methods
// in product code outside the command line's folders.
func TestLibraryErrorsNameNoFlag(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	fset := token.NewFileSet()
	var unexpected []string
	used := map[string]bool{}
	files := 0
	for _, dir := range productDirs {
		err := eachGoFile(root, dir, harnessDir, func(rel, p string) error {
			if strings.HasSuffix(rel, "_test.go") || slices.ContainsFunc(cliDirs, func(d string) bool { return strings.HasPrefix(rel, d) }) {
				return nil
			}
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files++
			check := func(n ast.Node) {
				eachStringLiteral(n, func(lit *ast.BasicLit, s string) {
					for _, m := range flagPattern.FindAllString(s, -1) {
						flag := strings.TrimLeft(m, " \t\n(`'\"")
						key := rel + " " + flag
						if _, ok := errFlagExceptions[key]; ok {
							used[key] = true
						} else {
							unexpected = append(unexpected, fmt.Sprintf("%s:%d: names %s", rel, fset.Position(lit.Pos()).Line, flag))
						}
					}
				})
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.FuncDecl:
					if x.Recv != nil && x.Name.Name == "Error" && x.Body != nil {
						check(x.Body)
						return false
					}
				case *ast.CallExpr:
					if sel, ok := x.Fun.(*ast.SelectorExpr); ok {
						if pkg, ok := sel.X.(*ast.Ident); ok &&
							((pkg.Name == "errors" && sel.Sel.Name == "New") || (pkg.Name == "fmt" && sel.Sel.Name == "Errorf")) {
							for _, a := range x.Args {
								check(a)
							}
							return false
						}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", dir, err)
		}
	}
	if files < 50 {
		t.Fatalf("too few product files parsed (%d): is the walk finding the sources?", files)
	}
	reportAgainst(t, "library errors naming a command-line flag; describe the condition, and word it in the command (cli.WordedError)", unexpected, errFlagExceptions, used)
}
