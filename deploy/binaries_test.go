package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// sdkEnv are the variables the AWS SDK reads by itself: they appear in no
// --help, and setting them is how a deployment points the binaries at a region,
// credentials or a local S3/SQS.
var sdkEnv = map[string]bool{
	"AWS_REGION":            true,
	"AWS_ACCESS_KEY_ID":     true,
	"AWS_SECRET_ACCESS_KEY": true,
	"AWS_ENDPOINT_URL_S3":   true,
	"AWS_ENDPOINT_URL_SQS":  true,
}

// flagInfo is one flag as a binary's --help describes it.
type flagInfo struct {
	Name    string // without dashes
	Type    string // "" for booleans
	Env     string // the variable that sets it, if any
	Default string // as printed, quotes removed; "" when none is printed
}

// command is what one binary, or one migratectl subcommand, reads.
type command struct {
	Path     string              // "worker", "migratectl setup"
	Flags    map[string]flagInfo // by flag name
	Env      map[string]string   // variable -> flag name
	Required []string            // variables it refuses to start without (unless the flag is given)
}

// reads reports whether the command, or the SDK under it, reads the variable.
func (c *command) reads(env string) bool {
	_, ok := c.Env[env]
	return ok || sdkEnv[env]
}

// binaries builds the commands once per test run, as the Dockerfile does.
type binaries struct {
	dir  string
	mu   sync.Mutex
	cmds map[string]*command
}

var (
	buildOnce sync.Once
	built     *binaries
	buildErr  error
	tempDir   string // the build directory, when it is a temporary one
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tempDir != "" {
		_ = os.RemoveAll(tempDir)
	}
	os.Exit(code)
}

// binariesDir is where the tests build the commands: a directory of this
// checkout's own in the user's cache, kept from one run to the next, because
// `go build -o` does not link a binary again when it is up to date (a second
// or more of every run). go build replaces a binary's file rather than writing
// into it, so a run never changes a binary that another run is executing.
// Without a user cache directory it is a temporary directory.
func binariesDir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		tempDir, err = os.MkdirTemp("", "keymigrate-deploy-test-")
		return tempDir, err
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	dir := filepath.Join(cache, "keymigrate", "deploy-test", hex.EncodeToString(sum[:8]))
	return dir, os.MkdirAll(dir, 0o755)
}

// cmdNames lists the commands under cmd/: the image must hold every one.
func cmdNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, "cmd", e.Name(), "main.go")); e.IsDir() && err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	require.NotEmpty(t, names)
	return names
}

// goTool finds the go command that runs this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// buildBinaries builds every command with CGO_ENABLED=0 and -ldflags="-s -w"
// (the Dockerfile's settings; without symbol tables and DWARF the three links
// take half the time) into a directory shared by the tests of this run.
// Unlike the Dockerfile it does not pass -trimpath: the paths in a binary
// change nothing these tests read, and without it every package that does not
// depend on cgo (most of the standard library) is the one `go test` already
// compiled for this test binary, instead of a second build of it.
func buildBinaries(t *testing.T) *binaries {
	t.Helper()
	names := cmdNames(t)
	buildOnce.Do(func() {
		buildDir, err := binariesDir()
		if err != nil {
			buildErr = fmt.Errorf("a directory for the binaries: %w", err)
			return
		}
		// A command that is no longer under cmd/ must not stay runnable.
		entries, err := os.ReadDir(buildDir)
		if err != nil {
			buildErr = err
			return
		}
		for _, e := range entries {
			if !slices.Contains(names, e.Name()) {
				if err := os.RemoveAll(filepath.Join(buildDir, e.Name())); err != nil {
					buildErr = err
					return
				}
			}
		}
		args := []string{"build", "-ldflags=-s -w", "-o", buildDir + string(os.PathSeparator)}
		for _, n := range names {
			args = append(args, "./cmd/"+n)
		}
		cmd := exec.Command(goTool(), args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built = &binaries{dir: buildDir, cmds: map[string]*command{}}
	})
	require.NoError(t, buildErr)
	return built
}

// helpLine matches one flag line of cobra's --help: "  -h, --name type   text".
var (
	helpLine    = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)(?: ([a-zA-Z]+))?\s{2,}(.*)$`)
	helpEnv     = regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)
	helpDefault = regexp.MustCompile(`\(default (.+)\)$`)
	missingRe   = regexp.MustCompile(`missing --([a-z0-9-]+) \(or ([A-Z0-9_]+)\)`)
)

// parseHelp reads the flags of one --help text.
func parseHelp(help string) map[string]flagInfo {
	flags := map[string]flagInfo{}
	for _, line := range strings.Split(help, "\n") {
		m := helpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := flagInfo{Name: m[1], Type: m[2]}
		if e := helpEnv.FindStringSubmatch(m[3]); e != nil {
			f.Env = e[1]
		}
		if d := helpDefault.FindStringSubmatch(m[3]); d != nil {
			f.Default = strings.Trim(d[1], `"`)
		}
		flags[f.Name] = f
	}
	return flags
}

// describe returns what a command line's binary (and subcommand) reads: argv is
// a container's command, e.g. ["migratectl", "setup", "--create-bucket"].
func (b *binaries) describe(argv []string) (*command, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command")
	}
	bin := filepath.Base(argv[0])
	path := []string{bin}
	if bin == "migratectl" {
		if len(argv) < 2 || strings.HasPrefix(argv[1], "-") {
			return nil, fmt.Errorf("migratectl without a subcommand")
		}
		path = append(path, argv[1])
	}
	key := strings.Join(path, " ")
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.cmds[key]; ok {
		return c, nil
	}
	exe := filepath.Join(b.dir, bin)
	if _, err := os.Stat(exe); err != nil {
		return nil, fmt.Errorf("%s is not one of the commands under cmd/", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	help, err := exec.CommandContext(ctx, exe, append(path[1:], "--help")...).Output()
	if err != nil {
		return nil, fmt.Errorf("%s --help: %w", key, err)
	}
	if bin == "migratectl" && !bytes.Contains(help, []byte("migratectl "+path[1])) {
		return nil, fmt.Errorf("migratectl has no subcommand %q", path[1])
	}
	c := &command{Path: key, Flags: parseHelp(string(help)), Env: map[string]string{}}
	if len(c.Flags) == 0 {
		return nil, fmt.Errorf("%s --help lists no flags", key)
	}
	for _, f := range c.Flags {
		if f.Env != "" {
			c.Env[f.Env] = f.Name
		}
	}
	// With nothing set, a command names every setting it cannot start without
	// ("missing --queue-url (or KEYMIGRATE_QUEUE_URL)") and exits before it
	// connects to anything.
	run := exec.CommandContext(ctx, exe, path[1:]...)
	run.Env = []string{}
	run.Dir = b.dir
	out, _ := run.CombinedOutput()
	for _, m := range missingRe.FindAllStringSubmatch(string(out), -1) {
		c.Required = append(c.Required, m[2])
	}
	b.cmds[key] = c
	return c, nil
}

// parsedArgs are a command line's flags, after its command path.
type parsedArgs struct {
	cmd    *command
	values map[string]string // flag -> value ("true" for a bare boolean)
}

// parseArgs checks a container's command line against what the binary accepts.
func (b *binaries) parseArgs(argv []string) (*parsedArgs, []string) {
	c, err := b.describe(argv)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var problems []string
	p := &parsedArgs{cmd: c, values: map[string]string{}}
	rest := argv[len(strings.Fields(c.Path)):]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if !strings.HasPrefix(a, "--") {
			problems = append(problems, fmt.Sprintf("%s takes no argument %q", c.Path, a))
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		f, ok := c.Flags[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s has no flag --%s", c.Path, name))
			continue
		}
		if !hasValue {
			if f.Type == "" {
				value = "true"
			} else if i+1 < len(rest) {
				i++
				value = rest[i]
			} else {
				problems = append(problems, fmt.Sprintf("%s --%s needs a value", c.Path, name))
			}
		}
		p.values[name] = value
	}
	return p, problems
}

// setting is the value a flag takes in a container: the command line wins over
// the variable, which wins over the default the binary prints.
func (p *parsedArgs) setting(env map[string]string, flag string) (string, bool) {
	f, ok := p.cmd.Flags[flag]
	if !ok {
		return "", false
	}
	if v, ok := p.values[flag]; ok {
		return v, true
	}
	if v, ok := env[f.Env]; ok && f.Env != "" {
		return v, true
	}
	return f.Default, f.Default != ""
}

// container is one process a deployment file starts, wherever it comes from.
type container struct {
	Where string            // for messages: "compose service worker"
	Argv  []string          // entrypoint + command
	Env   map[string]string // resolved: name -> value ("" when only known to exist)
	Ports []int             // container ports it exposes
}

// checkContainer checks one keymigrate container against its binary: its
// flags exist, every variable it sets is read, every required setting is given,
// and its --listen port is one it exposes.
func (b *binaries) checkContainer(c container) (*parsedArgs, []string) {
	p, problems := b.parseArgs(c.Argv)
	if p == nil {
		return nil, prefix(c.Where, problems)
	}
	names := make([]string, 0, len(c.Env))
	for n := range c.Env {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !p.cmd.reads(n) {
			problems = append(problems, fmt.Sprintf("sets %s, which %s does not read (see its --help)", n, p.cmd.Path))
		}
	}
	for _, r := range p.cmd.Required {
		if _, ok := c.Env[r]; ok {
			continue
		}
		if _, ok := p.values[p.cmd.Env[r]]; ok {
			continue
		}
		problems = append(problems, fmt.Sprintf("does not set %s, which %s requires", r, p.cmd.Path))
	}
	if listen, ok := p.setting(c.Env, "listen"); ok && listen != "" {
		port, err := portOf(listen)
		if err != nil {
			problems = append(problems, fmt.Sprintf("--listen %q: %v", listen, err))
		} else if !slices.Contains(c.Ports, port) {
			problems = append(problems, fmt.Sprintf("serves /healthz, /readyz and /metrics on %d (--listen %s) but exposes %v", port, listen, c.Ports))
		}
	}
	return p, prefix(c.Where, problems)
}

// requireNoProblems fails the test with one problem per line.
func requireNoProblems(t *testing.T, problems []string) {
	t.Helper()
	if len(problems) > 0 {
		t.Fatalf("%d problems:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
}

func prefix(where string, problems []string) []string {
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = where + ": " + p
	}
	return out
}

// portOf reads the port of "host:port" or ":port".
func portOf(addr string) (int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return 0, fmt.Errorf("no port in %q", addr)
	}
	return strconv.Atoi(addr[i+1:])
}

// workerTiming is what a worker container's drain and heartbeats depend on.
type workerTiming struct {
	// DBMaxConns bounds the worker\'s Postgres connections (--db-max-conns).
	DBMaxConns                                     int
	Concurrency                                    int
	Visibility, Heartbeat, WaitTime, ShutdownGrace time.Duration
}

// releaseMargin is what a drain needs beyond the long poll and the shutdown
// grace: releasing what is still in hand (ChangeMessageVisibility to 0 in
// batches; milliseconds usually, the calls time out after 30s) and exiting.
const releaseMargin = 10 * time.Second

// timingOf reads a worker container's effective settings.
func timingOf(p *parsedArgs, env map[string]string) (workerTiming, []string) {
	var t workerTiming
	var problems []string
	dur := func(flag string) time.Duration {
		v, ok := p.setting(env, flag)
		if !ok {
			return 0
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("--%s %q is not a duration", flag, v))
		}
		return d
	}
	t.Visibility = dur("visibility-timeout")
	t.WaitTime = dur("wait-time")
	t.ShutdownGrace = dur("shutdown-grace")
	t.Heartbeat = dur("heartbeat")
	if t.Heartbeat == 0 {
		// worker.Config: "HeartbeatInterval defaults to a third of VisibilityTimeout".
		t.Heartbeat = t.Visibility / 3
	}
	if v, ok := p.setting(env, "concurrency"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("--concurrency %q is not a number", v))
		}
		t.Concurrency = n
	}
	if v, ok := p.setting(env, "db-max-conns"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("--db-max-conns %q is not a number", v))
		}
		t.DBMaxConns = n
	}
	if t.Visibility == 0 || t.WaitTime == 0 || t.ShutdownGrace == 0 || t.Concurrency == 0 || t.DBMaxConns == 0 {
		problems = append(problems, fmt.Sprintf("cannot read the worker's timing settings: %+v", t))
	}
	return t, problems
}

// longestDrain bounds a worker's graceful stop: the long poll in progress
// finishes, photos in hand get the shutdown grace, the rest is released.
func (t workerTiming) longestDrain() time.Duration {
	return t.WaitTime + t.ShutdownGrace + releaseMargin
}

// check states the relations docs/kubernetes.md explains. killAfter is how
// long the platform waits between SIGTERM and SIGKILL.
func (t workerTiming) check(killAfter time.Duration) []string {
	var problems []string
	if 2*t.Heartbeat > t.Visibility {
		problems = append(problems, fmt.Sprintf("heartbeat %s is more than half the visibility timeout %s: one late heartbeat and the message reappears while in hand", t.Heartbeat, t.Visibility))
	}
	if killAfter <= t.longestDrain() {
		problems = append(problems, fmt.Sprintf("the platform kills the worker %s after SIGTERM, but a graceful drain takes up to %s (wait time %s + shutdown grace %s + %s to release)",
			killAfter, t.longestDrain(), t.WaitTime, t.ShutdownGrace, releaseMargin))
	}
	return problems
}

// TestBinariesDescribeThemselves guards the parsing every other test relies
// on: if --help or the "missing --x (or X)" message changed shape, the other
// tests would check nothing.
func TestBinariesDescribeThemselves(t *testing.T) {
	t.Parallel()
	b := buildBinaries(t)

	w, err := b.describe([]string{"worker"})
	require.NoError(t, err)
	require.Equal(t, "KEYMIGRATE_VISIBILITY_TIMEOUT", w.Flags["visibility-timeout"].Env)
	require.Equal(t, "1m0s", w.Flags["visibility-timeout"].Default)
	require.Equal(t, "int", w.Flags["concurrency"].Type)
	require.Equal(t, "", w.Flags["drain"].Type, "booleans print no type")
	require.Equal(t, "visibility-timeout", w.Env["KEYMIGRATE_VISIBILITY_TIMEOUT"])
	require.Contains(t, w.Required, "DATABASE_URL", "read from the binary's refusal to start")
	require.Contains(t, w.Required, "KEYMIGRATE_QUEUE_URL")

	p, err := b.describe([]string{"producer"})
	require.NoError(t, err)
	require.Contains(t, p.Required, "KEYMIGRATE_QUEUE_URL")

	s, err := b.describe([]string{"migratectl", "setup"})
	require.NoError(t, err)
	require.Equal(t, "KEYMIGRATE_QUEUE_NAME", s.Flags["queue-name"].Env)
	require.Contains(t, s.Flags, "database-url", "global flags count")

	_, err = b.describe([]string{"migratectl", "no-such-command"})
	require.Error(t, err)
	_, err = b.describe([]string{"sh", "-c", "worker"})
	require.Error(t, err, "the image has no shell")

	args, problems := b.parseArgs([]string{"worker", "--concurrency", "8", "--drain", "--wait-time=1s", "--no-such-flag"})
	require.Equal(t, []string{"worker has no flag --no-such-flag"}, problems)
	require.Equal(t, map[string]string{"concurrency": "8", "drain": "true", "wait-time": "1s"}, args.values)
	v, ok := args.setting(map[string]string{"KEYMIGRATE_CONCURRENCY": "4", "KEYMIGRATE_SHUTDOWN_GRACE": "5s"}, "concurrency")
	require.True(t, ok)
	require.Equal(t, "8", v, "the flag wins over the variable")
	v, _ = args.setting(map[string]string{"KEYMIGRATE_SHUTDOWN_GRACE": "5s"}, "shutdown-grace")
	require.Equal(t, "5s", v, "the variable wins over the default")
	v, _ = args.setting(nil, "visibility-timeout")
	require.Equal(t, "1m0s", v, "the default from --help")
}

// TestBinariesAreStatic checks what the runtime image depends on: binaries
// built with CGO_ENABLED=0 need no libc and no dynamic loader.
func TestBinariesAreStatic(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the image's binaries are Linux ELF files; this build is for " + runtime.GOOS)
	}
	b := buildBinaries(t)
	for _, name := range cmdNames(t) {
		f, err := elf.Open(filepath.Join(b.dir, name))
		require.NoError(t, err, name)
		for _, p := range f.Progs {
			require.NotEqual(t, elf.PT_INTERP, p.Type, "%s asks for a dynamic loader", name)
		}
		libs, err := f.ImportedLibraries()
		require.NoError(t, err)
		require.Empty(t, libs, "%s links shared libraries", name)
		require.NoError(t, f.Close())
	}
}
