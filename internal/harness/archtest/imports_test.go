package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/keymigrate/keymigrate/"

// pkg is what `go list -json` says of one package.
type pkg struct {
	ImportPath string
	Imports    []string // non-test imports only
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"...")
	cmd.Dir = "../../.."
	out, err := cmd.Output()
	require.NoError(t, err, "go list")
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		p.ImportPath = strings.TrimPrefix(p.ImportPath, module)
		var ours []string
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module) {
				ours = append(ours, strings.TrimPrefix(imp, module))
			} else {
				ours = append(ours, imp)
			}
		}
		p.Imports = ours
		pkgs = append(pkgs, p)
	}
	require.Greater(t, len(pkgs), 30, "go list found the module's packages")
	return pkgs
}

// part is the role of a package: the top of the tree it sits in.
func part(path string) string {
	switch {
	case strings.HasPrefix(path, "internal/"):
		rest := strings.TrimPrefix(path, "internal/")
		return "internal/" + strings.SplitN(rest, "/", 2)[0]
	case strings.HasPrefix(path, "cmd/"):
		return "cmd"
	default:
		return strings.SplitN(path, "/", 2)[0]
	}
}

// allowed says which parts each part may import (besides itself), as
// docs/architecture.md draws them. The harness may import anything and
// nothing but the harness (and deploy's tests) may import it.
var allowed = map[string][]string{
	"internal/pipeline": {},
	"internal/app":      {"internal/pipeline"},
	"internal/wiring":   {"internal/pipeline"},
	"internal/ops":      {"internal/pipeline"},
	"producer":          {"internal/pipeline", "internal/wiring"},
	"worker":            {"internal/pipeline", "internal/wiring"},
	"cmd":               {"internal/pipeline", "internal/wiring", "internal/ops", "internal/app", "producer", "worker"},
	"internal/harness":  {"internal/pipeline", "internal/wiring", "internal/ops", "internal/app", "producer", "worker"},
	"deploy":            {"internal/pipeline", "internal/wiring", "internal/ops", "internal/app", "internal/harness"},
}

// Product packages never import the harness, and no part imports upward.
func TestPartsImportOnlyWhatTheArchitectureAllows(t *testing.T) {
	t.Parallel()
	for _, p := range listPackages(t) {
		from := part(p.ImportPath)
		ok, known := allowed[from]
		require.True(t, known, "%s is in no part docs/architecture.md names (%s): place it in one, or add the part", p.ImportPath, from)
		for _, imp := range p.Imports {
			if strings.Contains(imp, ".") && !strings.HasPrefix(imp, "internal/") {
				continue // another module, or the standard library
			}
			if !strings.HasPrefix(imp, "internal/") && !strings.HasPrefix(imp, "cmd/") && imp != "producer" && imp != "worker" && !strings.HasPrefix(imp, "deploy") {
				continue // the standard library
			}
			to := part(imp)
			if to == from {
				continue
			}
			require.Contains(t, ok, to, "%s (%s) imports %s (%s): docs/architecture.md does not allow %s to import %s", p.ImportPath, from, imp, to, from, to)
		}
	}
}

// The layering STYLE.md names, package by package.
func TestThePackagesKeepTheirLayering(t *testing.T) {
	t.Parallel()
	forbid := map[string][]string{
		// the ledger knows no S3, the object store no database
		"internal/pipeline/ledger":   {"github.com/aws/aws-sdk-go-v2/service/s3", "internal/pipeline/objstore"},
		"internal/pipeline/objstore": {"github.com/jackc/pgx/v5", "github.com/jackc/pgx/v5/pgxpool", "internal/pipeline/ledger"},
		// the application can vendor its StorageService alone
		"internal/app/storage": {"internal/pipeline/ledger", "worker", "producer"},
	}
	pkgs := listPackages(t)
	for _, p := range pkgs {
		if p.ImportPath == "internal/pipeline/keylayout" {
			for _, imp := range p.Imports {
				require.False(t, strings.HasPrefix(imp, "internal/"), "keylayout is pure: it imports %s", imp)
			}
		}
		for _, bad := range forbid[p.ImportPath] {
			require.NotContains(t, p.Imports, bad, "%s must not import %s", p.ImportPath, bad)
		}
	}
}
