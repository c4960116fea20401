package deploy

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// What docker-compose.yml must hold: the three servers, the one-shot steps in
// order, and the worker fleet, each running the command the binaries know it by.
var (
	composeCommands = map[string]string{ // service -> command path
		"setup":    "migratectl setup",
		"seed":     "migratectl seed",
		"producer": "producer",
		"worker":   "worker",
	}
	composeServers = []string{"fauxqs", "postgres", "versitygw"}
	composeDeps    = map[string]map[string]string{ // service -> dependency -> condition
		"setup":    {"postgres": types.ServiceConditionHealthy, "versitygw": types.ServiceConditionHealthy, "fauxqs": types.ServiceConditionHealthy},
		"seed":     {"setup": types.ServiceConditionCompletedSuccessfully},
		"producer": {"seed": types.ServiceConditionCompletedSuccessfully},
		"worker":   {"setup": types.ServiceConditionCompletedSuccessfully},
	}
)

// loadCompose loads compose content with the compose-spec loader, as docker
// compose does (schema validation, anchors, merge keys, normalisation), with
// an empty environment so the result does not depend on the shell's.
func loadCompose(content []byte) (*types.Project, error) {
	dir, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yml"), Content: content}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("keymigrate", true) })
}

func composeEnv(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		env[k] = ""
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// server is what a keymigrate service needs to know about one local server.
type server struct {
	Name   string
	Port   int
	Health string // the health check, joined
	Env    map[string]string
	Args   []string
}

// composeServer describes one of the compose file's servers.
func composeServer(s types.ServiceConfig) (server, error) {
	sv := server{Name: s.Name, Env: composeEnv(s), Args: append(append([]string{}, s.Entrypoint...), s.Command...)}
	if s.HealthCheck != nil && !s.HealthCheck.Disable {
		sv.Health = strings.Join(s.HealthCheck.Test, " ")
	}
	var err error
	sv.Port, err = serverPort(s.Image, sv.Args, sv.Env)
	return sv, err
}

// serverPort reads the port a server listens on from its own configuration,
// the way its image does: versitygw from --port, fauxqs from FAUXQS_PORT
// (default 4566), Postgres 5432, and the CloudWatch exporter of deploy/k8s
// (YACE) from --listen-address (default :5000).
func serverPort(image string, args []string, env map[string]string) (int, error) {
	name, _ := splitImage(image)
	switch name {
	case "postgres":
		return 5432, nil
	case "versity/versitygw":
		return flagPort(args, "--port")
	case "kibertoad/fauxqs":
		if p, ok := env["FAUXQS_PORT"]; ok {
			return strconv.Atoi(p)
		}
		return 4566, nil
	case "quay.io/prometheuscommunity/yet-another-cloudwatch-exporter":
		if p, err := flagPort(args, "--listen-address"); err == nil {
			return p, nil
		}
		return 5000, nil
	}
	return 0, fmt.Errorf("unknown server image %s", image)
}

// flagPort reads the port of an address flag such as versitygw's --port :7070.
func flagPort(args []string, flag string) (int, error) {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return portOf(args[i+1])
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return portOf(v)
		}
	}
	return 0, fmt.Errorf("no %s", flag)
}

// urlPort is a URL's port, or its scheme's.
func urlPort(u *url.URL) int {
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	switch u.Scheme {
	case "https":
		return 443
	case "postgres", "postgresql":
		return 5432
	}
	return 80
}

// checkCompose returns every way the compose project disagrees with the
// binaries or with itself.
func checkCompose(p *types.Project, b *binaries) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	var want []string
	want = append(want, composeServers...)
	for s := range composeCommands {
		want = append(want, s)
	}
	sort.Strings(want)
	got := p.ServiceNames()
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		add("services are %v, want %v", got, want)
	}

	servers := map[string]server{}
	for _, name := range composeServers {
		s, ok := p.Services[name]
		if !ok {
			continue
		}
		sv, err := composeServer(s)
		if err != nil {
			add("service %s: %v", name, err)
			continue
		}
		if sv.Health == "" {
			add("service %s has no health check, so nothing can wait until it answers", name)
		} else if name != "postgres" && !strings.Contains(sv.Health, ":"+strconv.Itoa(sv.Port)+"/") {
			add("service %s listens on %d but its health check asks %q", name, sv.Port, sv.Health)
		}
		servers[name] = sv
	}

	// Every service may only wait for a dependency that can say it is ready
	// (a health check) or done (a one-shot).
	for _, name := range got {
		s := p.Services[name]
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			switch {
			case !ok:
				add("service %s depends on %s, which is not a service", name, dep)
			case d.Condition == types.ServiceConditionHealthy && (target.HealthCheck == nil || target.HealthCheck.Disable):
				add("service %s waits for %s to be healthy, but %s has no health check", name, dep, dep)
			case d.Condition == types.ServiceConditionCompletedSuccessfully && composeCommands[dep] == "worker":
				add("service %s waits for %s to complete, but %s keeps serving", name, dep, dep)
			}
		}
	}
	for name, deps := range composeDeps {
		s, ok := p.Services[name]
		if !ok {
			continue
		}
		for dep, cond := range deps {
			if got := s.DependsOn[dep].Condition; got != cond {
				add("service %s must wait for %s with condition %s (has %q)", name, dep, cond, got)
			}
		}
	}

	var image, dbURL, bucket string
	queueNames := map[string]string{}
	for _, name := range got {
		path, ok := composeCommands[name]
		if !ok {
			continue
		}
		s := p.Services[name]
		where := "compose service " + name
		if s.Build == nil || filepath.Clean(s.Build.Context) != filepath.Clean(p.WorkingDir) || s.Build.Dockerfile != "Dockerfile" {
			add("%s: must be built from ./Dockerfile (build: {context: ., dockerfile: Dockerfile})", where)
		}
		if image == "" {
			image = s.Image
		} else if s.Image != image {
			add("%s: image %s, but the other keymigrate services use %s", where, s.Image, image)
		}
		env := composeEnv(s)
		var ports []int
		for _, pc := range s.Ports {
			ports = append(ports, int(pc.Target))
		}
		c := container{Where: where, Argv: append(append([]string{}, s.Entrypoint...), s.Command...), Env: env, Ports: ports}
		args, cp := b.checkContainer(c)
		problems = append(problems, cp...)
		if args == nil {
			continue
		}
		if args.cmd.Path != path {
			add("%s: runs %s, want %s", where, args.cmd.Path, path)
		}
		if v := env["DATABASE_URL"]; dbURL == "" {
			dbURL = v
		} else if v != dbURL {
			add("%s: DATABASE_URL differs from the other services'", where)
		}
		if v := env["KEYMIGRATE_BUCKET"]; bucket == "" {
			bucket = v
		} else if v != bucket {
			add("%s: KEYMIGRATE_BUCKET %q differs from the other services' %q", where, v, bucket)
		}
		problems = append(problems, prefix(where, checkEndpoints(env, servers))...)
		if path == "migratectl setup" {
			for _, q := range []string{"queue-name", "dlq-name"} {
				v, _ := args.setting(env, q)
				queueNames[q] = v
			}
		}
		switch path {
		case "worker":
			if d, _ := args.setting(env, "drain"); d == "true" {
				add("%s: --drain makes workers exit when the queue is empty; the service keeps serving", where)
			}
			if s.ContainerName != "" {
				add("%s: container_name prevents --scale", where)
			}
			for _, pc := range s.Ports {
				if pc.Published != "" {
					add("%s: publishes port %d on fixed host port %s, which prevents --scale", where, pc.Target, pc.Published)
				}
			}
			if s.Restart == "" || s.Restart == "no" {
				add("%s: a worker that stops should be restarted (restart: unless-stopped)", where)
			}
			timing, tp := timingOf(args, env)
			problems = append(problems, prefix(where, tp)...)
			var grace time.Duration = 10 * time.Second // docker's default stop timeout
			if s.StopGracePeriod != nil {
				grace = time.Duration(*s.StopGracePeriod)
			}
			problems = append(problems, prefix(where+" (stop_grace_period)", timing.check(grace))...)
		default:
			if s.Restart != "" && s.Restart != "no" {
				add("%s: a one-shot step must not restart (restart: %q)", where, s.Restart)
			}
		}
	}
	// The queues the workers and the producer use are the ones setup creates.
	for _, name := range got {
		if _, ok := composeCommands[name]; !ok {
			continue
		}
		env := composeEnv(p.Services[name])
		for flag, v := range map[string]string{"queue-name": "KEYMIGRATE_QUEUE_URL", "dlq-name": "KEYMIGRATE_DLQ_URL"} {
			u, ok := env[v]
			if !ok || queueNames[flag] == "" {
				continue
			}
			if seg := u[strings.LastIndex(u, "/")+1:]; seg != queueNames[flag] {
				add("compose service %s: %s names queue %q but setup creates --%s %q", name, v, seg, flag, queueNames[flag])
			}
		}
	}
	return problems
}

// checkEndpoints checks that a keymigrate container's URLs point at the local
// servers, on the ports they listen on, with the credentials they accept.
func checkEndpoints(env map[string]string, servers map[string]server) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	target := map[string]string{
		"DATABASE_URL":         "postgres",
		"AWS_ENDPOINT_URL_S3":  "versitygw",
		"AWS_ENDPOINT_URL_SQS": "fauxqs",
		"KEYMIGRATE_QUEUE_URL": "fauxqs",
		"KEYMIGRATE_DLQ_URL":   "fauxqs",
	}
	names := make([]string, 0, len(target))
	for n := range target {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, v := range names {
		raw, ok := env[v]
		if !ok {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			add("%s: %v", v, err)
			continue
		}
		sv, ok := servers[u.Hostname()]
		if !ok || u.Hostname() != target[v] {
			add("%s points at host %q, which is not the %s service", v, u.Hostname(), target[v])
			continue
		}
		if urlPort(u) != sv.Port {
			add("%s points at port %d, but %s listens on %d", v, urlPort(u), sv.Name, sv.Port)
		}
		if v == "DATABASE_URL" {
			pw, _ := u.User.Password()
			if u.User.Username() != sv.Env["POSTGRES_USER"] || pw != sv.Env["POSTGRES_PASSWORD"] || strings.TrimPrefix(u.Path, "/") != sv.Env["POSTGRES_DB"] {
				add("DATABASE_URL's user, password or database differ from the postgres service's POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB")
			}
		}
	}
	if s3, ok := servers["versitygw"]; ok && env["AWS_ENDPOINT_URL_S3"] != "" {
		if env["AWS_ACCESS_KEY_ID"] != s3.Env["ROOT_ACCESS_KEY"] || env["AWS_SECRET_ACCESS_KEY"] != s3.Env["ROOT_SECRET_KEY"] {
			add("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY differ from versitygw's ROOT_ACCESS_KEY/ROOT_SECRET_KEY")
		}
	}
	return problems
}

func readCompose(t *testing.T) []byte {
	t.Helper()
	content, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	require.NoError(t, err)
	return content
}

// TestComposeFile loads docker-compose.yml as docker compose would and checks
// it against the binaries: services, images, commands, variables, ports,
// start order and the worker's drain timing.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	b := buildBinaries(t)
	p, err := loadCompose(readCompose(t))
	require.NoError(t, err)
	requireNoProblems(t, checkCompose(p, b))

	// The image the compose file builds is the one the Dockerfile describes.
	d := readDockerfile(t)
	require.Contains(t, d.final("EXPOSE"), "9090")
	w := p.Services["worker"]
	require.Equal(t, "9090", strings.TrimPrefix(composeEnv(w)["KEYMIGRATE_LISTEN"], ":"))
}

// TestComposeDrift shows that the checks catch what drifts: each edit below is
// one a person could make to docker-compose.yml, and each must be reported.
func TestComposeDrift(t *testing.T) {
	t.Parallel()
	b := buildBinaries(t)
	orig := string(readCompose(t))
	type edit struct{ old, new string }
	cases := []struct {
		name  string
		edits []edit
		want  string
	}{
		{"variable renamed", []edit{{"  KEYMIGRATE_QUEUE_URL: http", "  KEYMIGRATE_QUEUE: http"}}, "sets KEYMIGRATE_QUEUE, which worker does not read"},
		{"required variable dropped", []edit{{"  KEYMIGRATE_DLQ_URL: http://fauxqs:4566/000000000000/keymigrate-dlq\n", ""}}, "does not set KEYMIGRATE_DLQ_URL, which worker requires"},
		{"server renamed", []edit{{"  fauxqs:\n    image", "  sqs:\n    image"}, {"fauxqs: {condition", "sqs: {condition"}},
			`compose service worker: AWS_ENDPOINT_URL_SQS points at host "fauxqs", which is not the fauxqs service`},
		{"server port changed", []edit{{`"--port", ":7070"`, `"--port", ":7071"`}}, "listens on 7071 but its health check asks"},
		{"endpoint port changed", []edit{{"AWS_ENDPOINT_URL_SQS: http://fauxqs:4566", "AWS_ENDPOINT_URL_SQS: http://fauxqs:4567"}}, "AWS_ENDPOINT_URL_SQS points at port 4567, but fauxqs listens on 4566"},
		{"listen port changed", []edit{{`KEYMIGRATE_LISTEN: ":9090"`, `KEYMIGRATE_LISTEN: ":9091"`}}, "serves /healthz, /readyz and /metrics on 9091 (--listen :9091) but exposes [9090]"},
		{"flag renamed", []edit{{`"--concurrency", "8"`, `"--workers", "8"`}}, "worker has no flag --workers"},
		{"queue name changed", []edit{{`"--queue-name", "keymigrate",`, `"--queue-name", "photos",`}}, `KEYMIGRATE_QUEUE_URL names queue "keymigrate" but setup creates --queue-name "photos"`},
		{"grace too short", []edit{{"stop_grace_period: 60s", "stop_grace_period: 30s"}}, "kills the worker 30s after SIGTERM, but a graceful drain takes up to 55s"},
		{"heartbeat too slow", []edit{{`KEYMIGRATE_LISTEN: ":9090"`, "KEYMIGRATE_LISTEN: \":9090\"\n      KEYMIGRATE_HEARTBEAT: 45s"}}, "heartbeat 45s is more than half the visibility timeout 1m0s"},
		{"order lost", []edit{{"seed: {condition: service_completed_successfully}", "seed: {condition: service_started}"}}, "service producer must wait for seed with condition service_completed_successfully"},
		{"health check dropped", []edit{{"      test: [\"CMD\", \"pg_isready\", \"-U\", \"keymigrate\", \"-d\", \"keymigrate\"]\n", "      disable: true\n"}}, "waits for postgres to be healthy, but postgres has no health check"},
		{"worker drains", []edit{{`command: ["worker", "--concurrency", "8"]`, `command: ["worker", "--concurrency", "8", "--drain"]`}}, "--drain makes workers exit"},
		{"database name changed", []edit{{"POSTGRES_DB: keymigrate", "POSTGRES_DB: photos"}}, "DATABASE_URL's user, password or database differ"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			content := orig
			for _, e := range tc.edits {
				require.Contains(t, content, e.old)
				content = strings.ReplaceAll(content, e.old, e.new)
			}
			p, err := loadCompose([]byte(content))
			require.NoError(t, err)
			problems := checkCompose(p, b)
			require.NotEmpty(t, problems)
			require.Contains(t, strings.Join(problems, "\n"), tc.want)
		})
	}
}
