package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Op   string // upper case
	Args string
}

// dockerfile is the repository's Dockerfile, split into stages.
type dockerfile struct {
	Args   map[string]string // global ARGs (before the first FROM) and their defaults
	Stages [][]instruction   // each starts with its FROM
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	d := dockerfile{Args: map[string]string{}}
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		op, args, _ := strings.Cut(line, " ")
		in := instruction{Op: strings.ToUpper(op), Args: strings.TrimSpace(args)}
		switch {
		case in.Op == "FROM":
			d.Stages = append(d.Stages, []instruction{in})
		case len(d.Stages) == 0 && in.Op == "ARG":
			k, v, _ := strings.Cut(in.Args, "=")
			d.Args[k] = v
		case len(d.Stages) > 0:
			d.Stages[len(d.Stages)-1] = append(d.Stages[len(d.Stages)-1], in)
		}
	}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	require.NoError(t, s.Err())
	flush()
	require.GreaterOrEqual(t, len(d.Stages), 2, "a multi-stage build")
	return d
}

// final returns the arguments of the final stage's instructions of one kind.
func (d dockerfile) final(op string) []string {
	var out []string
	for _, in := range d.Stages[len(d.Stages)-1] {
		if in.Op == op {
			out = append(out, in.Args)
		}
	}
	return out
}

// user is the numeric uid the runtime image runs as.
func (d dockerfile) user(t *testing.T) int {
	t.Helper()
	users := d.final("USER")
	require.Len(t, users, 1, "the runtime stage sets USER once")
	uid, _, _ := strings.Cut(users[0], ":")
	n, err := strconv.Atoi(uid)
	require.NoError(t, err, "USER must be numeric, or Kubernetes' runAsNonRoot cannot check it")
	return n
}

// TestDockerfile checks the image the compose file and the manifests run:
// static binaries of every command, built by the Go that go.mod names, on a
// runtime base with CA certificates and no shell, as a non-root user.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	d := readDockerfile(t)
	names := cmdNames(t)

	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	require.NotNil(t, goLine)
	builder := d.Stages[0][0].Args
	require.Contains(t, builder, "golang:${GO_VERSION}", "the build stage uses the Go image of GO_VERSION")
	require.Equal(t, string(goLine[1]), d.Args["GO_VERSION"], "GO_VERSION must be go.mod's go version")
	stage := strings.Fields(builder)
	buildName := stage[len(stage)-1]

	var build string
	for _, in := range d.Stages[0] {
		if in.Op == "RUN" && strings.Contains(in.Args, "go build") {
			build = in.Args
		}
	}
	require.NotEmpty(t, build, "the build stage runs go build")
	require.Contains(t, build, "CGO_ENABLED=0", "static binaries: the runtime image has no libc")
	for _, n := range names {
		require.Contains(t, strings.Fields(build), "./cmd/"+n, "the image builds every command")
	}

	final := d.Stages[len(d.Stages)-1][0].Args
	require.Regexp(t, `^gcr\.io/distroless/static(-debian\d+)?:nonroot$`, final,
		"distroless/static: CA certificates and tzdata, no shell, no package manager")
	copies := strings.Join(d.final("COPY"), "\n")
	for _, n := range names {
		require.Regexp(t, regexp.MustCompile(`--from=`+buildName+`\s(.*\s)?/out/`+n+`\s.*/usr/local/bin/`), copies, "the runtime image holds %s", n)
	}
	require.NotZero(t, d.user(t), "the image runs as a non-root user")
	require.Contains(t, strings.Join(d.final("ENV"), " "), "PATH=/usr/local/bin", "commands are named without a path")

	cmd := d.final("CMD")
	require.Len(t, cmd, 1)
	require.Regexp(t, `^\["\w+"`, cmd[0], "exec form: there is no shell to run a string")
	require.Contains(t, d.final("EXPOSE"), "9090", "the --listen port the compose file and manifests use")

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	require.NoError(t, err)
	var patterns []string
	for _, l := range strings.Split(string(ignore), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	require.Contains(t, patterns, ".stack", "the local stack's data (a whole S3 bucket) stays out of the build context")
	for _, needed := range []string{"go.mod", "go.sum", "cmd", "internal", "worker", "producer"} {
		for _, p := range patterns {
			ok, _ := filepath.Match(p, needed)
			require.False(t, ok, ".dockerignore pattern %q drops %s, which the build needs", p, needed)
		}
	}
}
