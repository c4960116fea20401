package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// strCompareExceptions are the comparisons allowed, keyed by file and the
// literal compared ("path/file.go \"auto\""), each with its reason. The list
// may only shrink: the test fails on an entry that no longer offends.
var strCompareExceptions = map[string]string{
	`internal/wiring/logging/logging.go "auto"`: "a --log-format value; objstore.DestinationAuto spells the same word for another thing",
}

// Issue 19: states, reasons and errors that are compared are values or
// types, never text. Product code outside the package that declares a typed
// string constant (a ledger.State, a plan.Phase, a dlq reason…) compares
// with the constant, not with its spelling; and nothing compares an error's
// text (err.Error() == …, strings.Contains(err.Error(), …)): errors.Is and
// errors.As do. A source check: it sees literals and .Error() calls, not a
// string built elsewhere.
func TestNoStringComparisonOfATypedValueOrAnErrorText(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for _, dir := range productDirs {
		err := eachGoFile(root, dir, harnessDir, func(rel, p string) error {
			if strings.HasSuffix(rel, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files[rel] = f
			return nil
		})
		require.NoError(t, err, "walk %s", dir)
	}
	require.Greater(t, len(files), 50, "too few product files parsed: is the walk finding the sources?")

	typed := typedStringConstants(files)
	require.NotEmpty(t, typed["migrated"], "ledger.StateMigrated not found among the typed constants: is the collection working?")

	var unexpected []string
	used := map[string]bool{}
	offend := func(rel string, pos token.Pos, compared, what string) {
		key := rel + " " + compared
		if _, ok := strCompareExceptions[key]; ok {
			used[key] = true
			return
		}
		unexpected = append(unexpected, fmt.Sprintf("%s:%d: %s", rel, fset.Position(pos).Line, what))
	}
	for rel, f := range files {
		dir := path.Dir(rel)
		literal := func(e ast.Expr) (string, []string) {
			lit, ok := e.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return "", nil
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return "", nil
			}
			var owners []string
			for _, c := range typed[s] {
				if c.dir != dir {
					owners = append(owners, c.name)
				}
			}
			// A value some package's own constant spells is the owner's to
			// compare: only a comparison outside every declaring package
			// offends.
			if len(owners) < len(typed[s]) {
				return s, nil
			}
			return s, owners
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.BinaryExpr:
				if x.Op != token.EQL && x.Op != token.NEQ {
					return true
				}
				for _, side := range []ast.Expr{x.X, x.Y} {
					if s, owners := literal(side); len(owners) > 0 {
						offend(rel, x.Pos(), strconv.Quote(s), fmt.Sprintf("compares with %q: use %s", s, strings.Join(owners, " or ")))
					}
					if isErrorText(side) {
						offend(rel, x.Pos(), "Error()", "compares an error's text: use errors.Is or errors.As")
					}
				}
			case *ast.CaseClause:
				for _, e := range x.List {
					if s, owners := literal(e); len(owners) > 0 {
						offend(rel, e.Pos(), strconv.Quote(s), fmt.Sprintf("a case %q: use %s", s, strings.Join(owners, " or ")))
					}
				}
			case *ast.CallExpr:
				sel, ok := x.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "strings" {
					return true
				}
				for _, a := range x.Args {
					if isErrorText(a) {
						offend(rel, x.Pos(), "Error()", "strings."+sel.Sel.Name+" of an error's text: use errors.Is or errors.As")
					}
				}
			case *ast.SwitchStmt:
				if x.Tag != nil && isErrorText(x.Tag) {
					offend(rel, x.Pos(), "Error()", "switches on an error's text: use errors.Is or errors.As")
				}
			}
			return true
		})
	}
	reportAgainst(t, "string comparisons of a typed value or an error's text outside its owner", unexpected, strCompareExceptions, used)
}

// typedConst is a constant of a named string type, by the package folder
// that declares it.
type typedConst struct {
	dir  string // the declaring package's folder, relative to the root
	name string // pkg.Name, for the message
}

// typedStringConstants maps each string value a product package gives a
// constant of a named type (const StateMigrated State = "migrated") to the
// constants that spell it.
func typedStringConstants(files map[string]*ast.File) map[string][]typedConst {
	out := map[string][]typedConst{}
	for rel, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if vs.Type == nil {
					continue // untyped: a plain string, not a state
				}
				for i, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING || i >= len(vs.Names) {
						continue
					}
					s, err := strconv.Unquote(lit.Value)
					if err != nil || s == "" {
						continue
					}
					out[s] = append(out[s], typedConst{dir: path.Dir(rel), name: f.Name.Name + "." + vs.Names[i].Name})
				}
			}
		}
	}
	return out
}

// isErrorText reports whether e is a call x.Error() with no arguments.
func isErrorText(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 0 {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Error"
}
