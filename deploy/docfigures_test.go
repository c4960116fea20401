package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The figures the docs quote from flag defaults. Each claim is a pattern with
// one group, the value the docs state, and the commands whose flag default it
// must equal; every pattern must still match (a reworded sentence must bring
// its pattern along, or the check would lose its grip silently).
var docFigures = []struct {
	file, pattern string
	cmds          [][]string
	flag          string
}{
	{"docs/kubernetes.md", `\| maxReceiveCount \| (\d+) \|`, [][]string{{"migratectl", "setup"}, {"migratectl", "dlq", "list"}}, "max-receive-count"},
	{"docs/kubernetes.md", `maxReceiveCount, (\d+)\)`, [][]string{{"migratectl", "setup"}}, "max-receive-count"},
	{"docs/kubernetes.md", `maxReceiveCount \((\d+)\) receives`, [][]string{{"migratectl", "setup"}}, "max-receive-count"},
	{"docs/guarantees.md", "with the defaults \\(`maxReceiveCount` (\\d+),", [][]string{{"migratectl", "setup"}}, "max-receive-count"},
	{"docs/operating.md", "`--max-receive-count`, default (\\d+)", [][]string{{"migratectl", "setup"}}, "max-receive-count"},
	{"docs/operating.md", "`--group-size` \\((\\d+)\\)", [][]string{{"producer"}}, "group-size"},
	{"docs/operating.md", "`--in-flight` \\((\\d+)\\)", [][]string{{"producer"}}, "in-flight"},
	{"docs/operating.md", "`--send-concurrency` \\((\\d+)\\)", [][]string{{"producer"}}, "send-concurrency"},
	{"docs/operating.md", "`--db-max-conns` \\((\\d+),", [][]string{{"worker"}}, "db-max-conns"},
	{"docs/operating.md", "`--sweep-after` \\((\\w+)\\)", [][]string{{"worker"}, {"migratectl", "sweep"}}, "sweep-after"},
	{"docs/operating.md", "`--sweep-interval` \\((\\w+)\\)", [][]string{{"worker"}}, "sweep-interval"},
	{"docs/kubernetes.md", "`--db-max-conns`\\s+connections \\((\\d+) by default", [][]string{{"worker"}}, "db-max-conns"},
	{"docs/kubernetes.md", `\| sweep-after \| (\w+) \|`, [][]string{{"worker"}, {"migratectl", "sweep"}}, "sweep-after"},
	{"docs/kubernetes.md", "`--sweep-after` \\((\\w+)\\)", [][]string{{"worker"}, {"migratectl", "sweep"}}, "sweep-after"},
	{"docs/guarantees.md", "`--sweep-after` \\((\\d+ min)\\)", [][]string{{"worker"}}, "sweep-after"},
	{"docs/guarantees.md", "`--sweep-interval` (\\d+ min)", [][]string{{"worker"}}, "sweep-interval"},
	{"docs/guarantees.md", "`--dependency-probe` \\((\\d+ s)\\)", [][]string{{"worker"}}, "dependency-probe"},
	{"docs/performance-database.md", "`--db-max-conns` \\(default (\\d+);", [][]string{{"worker"}}, "db-max-conns"},
}

// retiredClaims are statements the docs once made that the code contradicts;
// none may come back, in the docs or in the manifests' comments.
var retiredClaims = []struct{ pattern, why string }{
	{`concurrency \+ 4`, "a worker's Postgres connections are --db-max-conns, whatever its concurrency"},
	{`five receives|after five the queue`, "maxReceiveCount is queue.DefaultMaxReceiveCount"},
	{`release on shutdown counts as a receive`, "a worker hands back what it stops as a fresh message (guarantees.md, section 8)"},
	{`a group of 100\b`, "the producer's group is --group-size"},
	{`see \*Commands\*`, "a dangling reference: name the file"},
	{`README, "Outages"`, "the README has no section Outages"},
}

// flagDefaults reads a command's flags as its --help prints them (cobra's
// rendering of the pflag defaults), for any depth of subcommand.
func flagDefaults(t *testing.T, b *binaries, argv []string) map[string]flagInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	help, err := exec.CommandContext(ctx, filepath.Join(b.dir, argv[0]), append(argv[1:], "--help")...).Output()
	require.NoError(t, err, "%v --help", argv)
	flags := parseHelp(string(help))
	require.NotEmpty(t, flags, "%v --help lists no flags", argv)
	return flags
}

// sameFigure compares a figure as the docs write it ("10", "10m", "10 min",
// "5 s") with a default as --help prints it ("10", "10m0s").
func sameFigure(doc, def string) bool {
	if doc == def {
		return true
	}
	norm := strings.NewReplacer(" min", "m", " s", "s").Replace(doc)
	dd, err1 := time.ParseDuration(norm)
	cd, err2 := time.ParseDuration(def)
	if err1 == nil && err2 == nil {
		return dd == cd
	}
	di, err1 := strconv.Atoi(doc)
	ci, err2 := strconv.Atoi(def)
	return err1 == nil && err2 == nil && di == ci
}

// checkDocFigures returns every figure the docs quote that differs from the
// code, every claim pattern that no longer matches, and every retired claim
// that is back. root is the repository; defaults reads a command's flags.
func checkDocFigures(root string, defaults func(argv []string) map[string]flagInfo) []string {
	var problems []string
	read := func(file string) string {
		body, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			problems = append(problems, err.Error())
		}
		return string(body)
	}
	for _, f := range docFigures {
		ms := regexp.MustCompile(f.pattern).FindAllStringSubmatch(read(f.file), -1)
		if len(ms) == 0 {
			problems = append(problems, fmt.Sprintf("%s no longer states %s (pattern %q): update the pattern with the text", f.file, f.flag, f.pattern))
		}
		for _, m := range ms {
			for _, argv := range f.cmds {
				fi, ok := defaults(argv)[f.flag]
				if !ok {
					problems = append(problems, fmt.Sprintf("%s: %s has no flag --%s", f.file, strings.Join(argv, " "), f.flag))
					continue
				}
				if !sameFigure(m[1], fi.Default) {
					problems = append(problems, fmt.Sprintf("%s says %q for --%s, but %s defaults to %s", f.file, m[0], f.flag, strings.Join(argv, " "), fi.Default))
				}
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	more, _ := filepath.Glob(filepath.Join(root, "deploy", "k8s", "base", "*.yaml"))
	files = append(append(files, filepath.Join(root, "README.md")), more...)
	for _, file := range files {
		body, _ := os.ReadFile(file)
		for _, c := range retiredClaims {
			if loc := regexp.MustCompile(c.pattern).FindIndex(body); loc != nil {
				rel, _ := filepath.Rel(root, file)
				problems = append(problems, fmt.Sprintf("%s says %q again: %s", rel, body[loc[0]:loc[1]], c.why))
			}
		}
	}
	return problems
}

// TestDocsQuoteTheFlagDefaults keeps the figures the docs quote (the queue's
// maxReceiveCount, the producer's group size, the worker's connection budget,
// the sweep's timing) equal to the defaults the commands print, and keeps the
// contradicted claims out.
func TestDocsQuoteTheFlagDefaults(t *testing.T) {
	t.Parallel()
	b := buildBinaries(t)
	cache := map[string]map[string]flagInfo{}
	defaults := func(argv []string) map[string]flagInfo {
		k := strings.Join(argv, " ")
		if cache[k] == nil {
			cache[k] = flagDefaults(t, b, argv)
		}
		return cache[k]
	}
	requireNoProblems(t, checkDocFigures("..", defaults))

	// KEDA's cooldown is shorter than the sweep's threshold: that is why the
	// fleet at zero needs the CronJob (docs/kubernetes.md says so).
	objs, err := kustomizeBuild(filepath.FromSlash("k8s/base"))
	require.NoError(t, err)
	m := newManifests(objs, externalSecrets)
	for _, so := range m.scaledObjects {
		require.NotNil(t, so.Spec.CooldownPeriod)
		cool := time.Duration(*so.Spec.CooldownPeriod) * time.Second
		k8sDoc, err := os.ReadFile("../docs/kubernetes.md")
		require.NoError(t, err)
		require.Contains(t, string(k8sDoc), fmt.Sprintf("`cooldownPeriod: %d`", *so.Spec.CooldownPeriod), "docs/kubernetes.md quotes the ScaledObject's cooldownPeriod")
		after, err := time.ParseDuration(defaults([]string{"worker"})["sweep-after"].Default)
		require.NoError(t, err)
		require.Less(t, cool, after, "docs/kubernetes.md says KEDA scales to zero before a worker's sweeper acts")
	}
}

// TestDocFiguresCatchADisagreement reintroduces disagreements the docs had
// (maxReceiveCount 5, a group of 100, a budget of concurrency + 4) into a copy
// of the docs and requires the check to report each.
func TestDocFiguresCatchADisagreement(t *testing.T) {
	t.Parallel()
	b := buildBinaries(t)
	root := t.TempDir()
	for _, dir := range []string{"docs", "deploy/k8s/base"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, dir), 0o755))
	}
	copyFile := func(rel string) {
		body, err := os.ReadFile(filepath.Join("..", rel))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(root, rel), body, 0o644))
	}
	docs, _ := filepath.Glob("../docs/*.md")
	for _, d := range docs {
		copyFile("docs/" + filepath.Base(d))
	}
	copyFile("README.md")
	edit := func(rel, old, new string) {
		p := filepath.Join(root, rel)
		body, err := os.ReadFile(p)
		require.NoError(t, err)
		require.Contains(t, string(body), old)
		require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(body), old, new, 1)), 0o644))
	}
	defaults := func(argv []string) map[string]flagInfo { return flagDefaults(t, b, argv) }
	require.Empty(t, checkDocFigures(root, defaults), "the copy agrees before the edits")
	edit("docs/kubernetes.md", "| maxReceiveCount | 10 |", "| maxReceiveCount | 5 |")
	edit("docs/operating.md", "`--group-size` (500)", "`--group-size` (100)")
	edit("docs/guarantees.md", "`--sweep-after` (10 min)", "`--sweep-after` (5 min)")
	edit("docs/kubernetes.md", "holds at most `--db-max-conns`", "holds concurrency + 4, at most `--db-max-conns`")
	problems := strings.Join(checkDocFigures(root, defaults), "\n")
	for _, want := range []string{
		`docs/kubernetes.md says "| maxReceiveCount | 5 |" for --max-receive-count, but migratectl setup defaults to 10`,
		`docs/kubernetes.md says "| maxReceiveCount | 5 |" for --max-receive-count, but migratectl dlq list defaults to 10`,
		"docs/operating.md says \"`--group-size` (100)\" for --group-size, but producer defaults to 500",
		"docs/guarantees.md says \"`--sweep-after` (5 min)\" for --sweep-after, but worker defaults to 10m0s",
		`docs/kubernetes.md says "concurrency + 4" again`,
	} {
		require.Contains(t, problems, want)
	}
}
