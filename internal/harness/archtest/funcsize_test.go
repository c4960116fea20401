package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The limits of an exported function or method of a product package. A
// longer function is a list of phases waiting for names; a longer parameter
// list is a struct waiting for a name (docs: /work/shared/STYLE.md).
const (
	maxLines  = 80 // from "func" to the closing brace
	maxParams = 6  // the receiver not counted
)

// productDirs are the trees of the product packages; harnessDir is left out
// of them (test and bench harness).
var (
	productDirs = []string{"cmd", "producer", "worker", "internal"}
	harnessDir  = "internal/harness"
)

// exceptions are the functions allowed over a limit for now, keyed by file
// and name ("path/file.go:Recv.Name" for a method), each with its reason.
// The list may only shrink: the test fails on an offender that is not here,
// and on an entry that no longer offends (remove it).
var exceptions = map[string]string{}

// offender is an exported function over a limit.
type offender struct {
	key   string // as in exceptions
	pos   string // file:line
	lines int
	param int
}

func (o offender) String() string {
	var over []string
	if o.lines > maxLines {
		over = append(over, fmt.Sprintf("%d lines (at most %d)", o.lines, maxLines))
	}
	if o.param > maxParams {
		over = append(over, fmt.Sprintf("%d parameters (at most %d)", o.param, maxParams))
	}
	return fmt.Sprintf("%s: %s: %s", o.pos, o.key[strings.LastIndex(o.key, ":")+1:], strings.Join(over, ", "))
}

func TestExportedFunctionsAreShortAndTakeFewParameters(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	offenders := findOffenders(t, root)
	require.True(t, len(offenders) > 0 || len(exceptions) == 0, "no function parsed over a limit, yet exceptions are listed: is the walk finding the sources?")

	var unexpected []string
	seen := map[string]bool{}
	for _, o := range offenders {
		seen[o.key] = true
		if _, ok := exceptions[o.key]; !ok {
			unexpected = append(unexpected, o.String())
		}
	}
	reportAgainst(t, "exported functions over the limits; split them at their phase boundaries, or give their parameters a struct", unexpected, exceptions, seen)
}

// reportAgainst fails t with the offences no exception covers (headline says
// what to do about them) and with the exceptions no offence used any more
// (the lists may only shrink: a fixed offence takes its exception with it).
func reportAgainst[V any](t *testing.T, headline string, unexpected []string, exceptions map[string]V, used map[string]bool) {
	t.Helper()
	var fixed []string
	for key := range exceptions {
		if !used[key] {
			fixed = append(fixed, key)
		}
	}
	slices.Sort(unexpected)
	slices.Sort(fixed)
	if len(unexpected) > 0 {
		t.Errorf("%s:\n  %s", headline, strings.Join(unexpected, "\n  "))
	}
	if len(fixed) > 0 {
		t.Errorf("exceptions that no longer offend (or no longer exist); remove them from the list:\n  %s", strings.Join(fixed, "\n  "))
	}
}

// findOffenders parses every non-test .go file of the product packages and
// returns the exported functions and methods over a limit.
func findOffenders(t *testing.T, root string) []offender {
	t.Helper()
	var out []offender
	files := 0
	fset := token.NewFileSet()
	for _, dir := range productDirs {
		err := eachGoFile(root, dir, harnessDir, func(rel, path string) error {
			if strings.HasSuffix(rel, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files++
			for _, decl := range f.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Body == nil || !fn.Name.IsExported() {
					continue
				}
				start := fset.Position(fn.Pos())
				o := offender{
					key:   rel + ":" + qualifiedName(fn),
					pos:   fmt.Sprintf("%s:%d", rel, start.Line),
					lines: fset.Position(fn.End()).Line - start.Line + 1,
					param: countParams(fn.Type.Params),
				}
				if o.lines > maxLines || o.param > maxParams {
					out = append(out, o)
				}
			}
			return nil
		})
		if err != nil {
			require.NoError(t, err, "walk %s", dir)
		}
	}
	require.Greater(t, files, 50, "too few product files parsed: is the walk finding the sources?")
	return out
}

// qualifiedName is Name, or Recv.Name for a method (the receiver's type
// without pointer or type parameters).
func qualifiedName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	typ := fn.Recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	switch x := typ.(type) {
	case *ast.IndexExpr:
		typ = x.X
	case *ast.IndexListExpr:
		typ = x.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.Name + "." + fn.Name.Name
	}
	return fn.Name.Name
}

// countParams counts parameters, one per name (an unnamed one counts once).
func countParams(fl *ast.FieldList) int {
	n := 0
	for _, f := range fl.List {
		n += max(1, len(f.Names))
	}
	return n
}

// eachGoFile calls fn with every .go file below root/dir, by its path
// relative to root with slashes and its path on disk. It skips the folder
// skip (relative to root), testdata, and hidden and _ folders.
func eachGoFile(root, dir, skip string, fn func(rel, path string) error) error {
	return filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel == skip || name == "testdata" || (rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") {
			return nil
		}
		return fn(rel, path)
	})
}

// repoRoot is the directory of go.mod, above this package's.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
