package deploy

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// externalSecrets are the Secrets the base expects the cluster to have (from
// a secret store, never from this repository), with their keys. The local
// overlay defines them; there, none may be missing.
var externalSecrets = map[string][]string{"keymigrate-database": {"DATABASE_URL"}}

// workerPostgresConns is what one worker opens at most: its pool is
// concurrency + 4 (cmd/worker/main.go, connect.Options.MaxConns).
func workerPostgresConns(concurrency int) int { return concurrency + 4 }

// budgetAnnotation on the ScaledObject states the Postgres connections the
// fleet may take at its largest (docs/kubernetes.md, "Sizing").
const budgetAnnotation = "keymigrate/postgres-connections"

// manifests indexes rendered objects by kind and name.
type manifests struct {
	objs     []kobj
	byKind   map[string]map[string]kobj
	external map[string][]string
}

func newManifests(objs []kobj, external map[string][]string) *manifests {
	m := &manifests{objs: objs, byKind: map[string]map[string]kobj{}, external: external}
	for _, o := range objs {
		k := str(o, "kind")
		if m.byKind[k] == nil {
			m.byKind[k] = map[string]kobj{}
		}
		m.byKind[k][str(o, "metadata", "name")] = o
	}
	return m
}

func (m *manifests) get(kind, name string) kobj { return m.byKind[kind][name] }

// sorted returns the objects of a kind in name order, for stable messages.
func (m *manifests) sorted(kind string) []kobj {
	var names []string
	for n := range m.byKind[kind] {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]kobj, len(names))
	for i, n := range names {
		out[i] = m.byKind[kind][n]
	}
	return out
}

// source reads the keys (and values) of a ConfigMap or Secret, or of an
// external Secret (values unknown).
func (m *manifests) source(kind, name string) (map[string]string, bool) {
	o := m.get(kind, name)
	if o == nil {
		if kind == "Secret" {
			if keys, ok := m.external[name]; ok {
				out := map[string]string{}
				for _, k := range keys {
					out[k] = ""
				}
				return out, true
			}
		}
		return nil, false
	}
	out := map[string]string{}
	for k, v := range mp(o, "data") {
		s := fmt.Sprint(v)
		if kind == "Secret" {
			if b, err := base64.StdEncoding.DecodeString(s); err == nil {
				s = string(b)
			}
		}
		out[k] = s
	}
	for k, v := range mp(o, "stringData") {
		out[k] = fmt.Sprint(v)
	}
	return out, true
}

// workload is one pod template, with where it comes from.
type workload struct {
	Kind, Name string
	Obj        kobj
	Labels     map[string]any
	Spec       map[string]any
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, kind := range []string{"Deployment", "Job"} {
		for _, o := range m.sorted(kind) {
			out = append(out, workload{Kind: kind, Name: str(o, "metadata", "name"), Obj: o,
				Labels: mp(o, "spec", "template", "metadata", "labels"), Spec: podSpec(o)})
		}
	}
	return out
}

func containersOf(spec map[string]any) []map[string]any {
	var out []map[string]any
	for _, c := range append(list(spec, "initContainers"), list(spec, "containers")...) {
		if cm, ok := c.(map[string]any); ok {
			out = append(out, cm)
		}
	}
	return out
}

// isKeymigrate reports whether a container runs the keymigrate image.
func isKeymigrate(c map[string]any) bool {
	name, _ := splitImage(str(c, "image"))
	return path.Base(name) == "keymigrate"
}

func containerPorts(c map[string]any) (map[string]int, []int) {
	named := map[string]int{}
	var nums []int
	for _, p := range list(c, "ports") {
		n, _ := at(p, "containerPort").(int)
		nums = append(nums, n)
		if name := str(p, "name"); name != "" {
			named[name] = n
		}
	}
	return named, nums
}

// matches reports whether labels carry every selector label.
func matches(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// resolveEnv is a container's environment as Kubernetes builds it: envFrom
// first, then env on top; every reference must resolve.
func (m *manifests) resolveEnv(c map[string]any) (map[string]string, []string) {
	env := map[string]string{}
	var problems []string
	for _, ef := range list(c, "envFrom") {
		for kind, field := range map[string]string{"ConfigMap": "configMapRef", "Secret": "secretRef"} {
			ref := str(ef, field, "name")
			if ref == "" {
				continue
			}
			src, ok := m.source(kind, ref)
			if !ok {
				problems = append(problems, fmt.Sprintf("envFrom %s %s, which does not exist", kind, ref))
			}
			for k, v := range src {
				env[k] = v
			}
		}
	}
	for _, e := range list(c, "env") {
		name := str(e, "name")
		if vf := mp(e, "valueFrom"); vf != nil {
			env[name] = ""
			for kind, field := range map[string]string{"ConfigMap": "configMapKeyRef", "Secret": "secretKeyRef"} {
				ref := str(vf, field, "name")
				if ref == "" {
					continue
				}
				src, ok := m.source(kind, ref)
				key := str(vf, field, "key")
				v, hasKey := src[key]
				if !ok || !hasKey {
					problems = append(problems, fmt.Sprintf("%s takes key %s of %s %s, which does not exist", name, key, kind, ref))
				}
				env[name] = v
			}
			continue
		}
		env[name] = str(e, "value")
	}
	return env, problems
}

// inCluster returns the Service a URL's host names ("fauxqs",
// "fauxqs.keymigrate.svc.cluster.local"), or "" for an outside host.
func inCluster(host, namespace string) (string, []string) {
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1:
		return parts[0], nil
	case len(parts) >= 3 && parts[2] == "svc":
		if parts[1] != namespace {
			return parts[0], []string{fmt.Sprintf("host %s is in namespace %s, the manifests in %s", host, parts[1], namespace)}
		}
		return parts[0], nil
	}
	return "", nil
}

// checkURL checks that an in-cluster URL names a Service and one of its ports.
func (m *manifests) checkURL(what, raw, namespace string) []string {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", what, err)}
	}
	svc, problems := inCluster(u.Hostname(), namespace)
	if svc == "" {
		return problems
	}
	s := m.get("Service", svc)
	if s == nil {
		return append(problems, fmt.Sprintf("%s points at %s, which is not a Service", what, svc))
	}
	var ports []int
	for _, p := range list(s, "spec", "ports") {
		n, _ := at(p, "port").(int)
		ports = append(ports, n)
	}
	if !slices.Contains(ports, urlPort(u)) {
		problems = append(problems, fmt.Sprintf("%s points at port %d, but Service %s serves %v", what, urlPort(u), svc, ports))
	}
	return problems
}

var awsQueueURL = regexp.MustCompile(`^https://sqs\.([a-z0-9-]+)\.amazonaws\.com/\d{12}/[A-Za-z0-9_-]+$`)

// checkManifests returns every way the rendered manifests disagree with the
// binaries or with each other. uid is the Dockerfile's USER.
func checkManifests(m *manifests, b *binaries, uid int) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	type worker struct {
		wl     workload
		c      map[string]any
		env    map[string]string
		timing workerTiming
	}
	var workers []worker
	images := map[string][]string{}
	queueURLs := map[string]bool{}
	for _, wl := range m.workloads() {
		where := wl.Kind + " " + wl.Name
		ns := str(wl.Obj, "metadata", "namespace")
		if wl.Kind == "Deployment" && !matches(mp(wl.Obj, "spec", "selector", "matchLabels"), wl.Labels) {
			add("%s: its selector does not match its pod template's labels", where)
		}
		runsKeymigrate := false
		for _, c := range containersOf(wl.Spec) {
			cwhere := fmt.Sprintf("%s container %s", where, str(c, "name"))
			env, ep := m.resolveEnv(c)
			problems = append(problems, prefix(cwhere, ep)...)
			named, nums := containerPorts(c)
			// Probes must name a port the container has.
			for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
				hg := mp(c, probe, "httpGet")
				if hg == nil {
					continue
				}
				port := at(hg, "port")
				if s, ok := port.(string); ok {
					if n, ok := named[s]; ok {
						port = n
					} else {
						add("%s: %s uses port %q, which the container does not name", cwhere, probe, s)
						continue
					}
				}
				if !slices.Contains(nums, port.(int)) {
					add("%s: %s uses port %v, which the container does not expose", cwhere, probe, port)
				}
			}
			if !isKeymigrate(c) {
				var args []string
				for _, a := range append(list(c, "command"), list(c, "args")...) {
					args = append(args, fmt.Sprint(a))
				}
				if port, err := serverPort(str(c, "image"), args, env); err != nil {
					add("%s: %v", cwhere, err)
				} else if !slices.Contains(nums, port) {
					add("%s: the server listens on %d (its own configuration) but the container exposes %v", cwhere, port, nums)
				}
				continue
			}
			runsKeymigrate = true
			images[str(c, "image")] = append(images[str(c, "image")], cwhere)
			var argv []string
			for _, a := range append(list(c, "command"), list(c, "args")...) {
				argv = append(argv, fmt.Sprint(a))
			}
			args, cp := b.checkContainer(container{Where: cwhere, Argv: argv, Env: env, Ports: nums})
			problems = append(problems, cp...)
			if args == nil {
				continue
			}
			for _, v := range []string{"DATABASE_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "KEYMIGRATE_QUEUE_URL", "KEYMIGRATE_DLQ_URL"} {
				problems = append(problems, prefix(cwhere, m.checkURL(v, env[v], ns))...)
			}
			for _, v := range []string{"KEYMIGRATE_QUEUE_URL", "KEYMIGRATE_DLQ_URL"} {
				if mm := awsQueueURL.FindStringSubmatch(env[v]); mm != nil && mm[1] != env["AWS_REGION"] {
					add("%s: %s is in region %s, but AWS_REGION is %q", cwhere, v, mm[1], env["AWS_REGION"])
				}
			}
			if u := env["KEYMIGRATE_QUEUE_URL"]; u != "" {
				queueURLs[u] = true
			}
			if args.cmd.Path == "migratectl setup" {
				for flag, v := range map[string]string{"queue-name": "KEYMIGRATE_QUEUE_URL", "dlq-name": "KEYMIGRATE_DLQ_URL"} {
					name, _ := args.setting(env, flag)
					if u := env[v]; u != "" && u[strings.LastIndex(u, "/")+1:] != name {
						add("%s: setup creates --%s %q but %s is %s", cwhere, flag, name, v, u)
					}
				}
			}
			// The binaries serve /healthz and /readyz on --listen.
			listen, _ := args.setting(env, "listen")
			listenPort, _ := portOf(listen)
			for probe, want := range map[string]string{"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				hg := mp(c, probe, "httpGet")
				if hg == nil {
					continue
				}
				if p := str(hg, "path"); p != want {
					add("%s: %s asks %s; the binaries serve %s for it", cwhere, probe, p, want)
				}
				port := at(hg, "port")
				if s, ok := port.(string); ok {
					port = named[s]
				}
				if port != listenPort {
					add("%s: %s asks port %v, but the binary listens on %q", cwhere, probe, port, listen)
				}
			}
			switch args.cmd.Path {
			case "worker":
				timing, tp := timingOf(args, env)
				problems = append(problems, prefix(cwhere, tp)...)
				workers = append(workers, worker{wl: wl, c: c, env: env, timing: timing})
				if d, _ := args.setting(env, "drain"); d == "true" {
					add("%s: --drain makes a worker exit when the queue is empty, and the Deployment restart it", cwhere)
				}
				for _, probe := range []string{"livenessProbe", "readinessProbe"} {
					if mp(c, probe) == nil {
						add("%s: no %s", cwhere, probe)
					}
				}
				for _, r := range [][]string{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
					if str(c, append([]string{"resources"}, r...)...) == "" {
						add("%s: no resources.%s", cwhere, strings.Join(r, "."))
					}
				}
			case "producer":
				if rp := str(wl.Spec, "restartPolicy"); wl.Kind != "Job" || (rp != "OnFailure" && rp != "Never") {
					add("%s: the producer runs once, as a Job", cwhere)
				}
			}
		}
		if !runsKeymigrate {
			continue
		}
		if sa := str(wl.Spec, "serviceAccountName"); m.get("ServiceAccount", sa) == nil {
			add("%s: service account %q does not exist", where, sa)
		}
		sc := mp(wl.Spec, "securityContext")
		if at(sc, "runAsNonRoot") != true || at(sc, "runAsUser") != uid {
			add("%s: must run as non-root user %d, the image's USER (securityContext runAsNonRoot, runAsUser)", where, uid)
		}
	}
	if len(images) > 1 {
		add("keymigrate containers use different images: %v", images)
	}
	if len(queueURLs) > 1 {
		add("keymigrate containers use different main queues: %v", queueURLs)
	}
	if len(workers) != 1 {
		add("want one worker Deployment, found %d", len(workers))
		return problems
	}
	w := workers[0]
	wwhere := "Deployment " + w.wl.Name
	if w.wl.Kind != "Deployment" {
		add("the worker must be a Deployment, is a %s", w.wl.Kind)
	}
	grace, ok := at(w.wl.Spec, "terminationGracePeriodSeconds").(int)
	if !ok {
		grace = 30 // Kubernetes' default
	}
	problems = append(problems, prefix(wwhere+" (terminationGracePeriodSeconds)", w.timing.check(time.Duration(grace)*time.Second))...)

	// Services select pods and target their ports.
	for _, s := range m.sorted("Service") {
		where := "Service " + str(s, "metadata", "name")
		sel := mp(s, "spec", "selector")
		var selected []workload
		for _, wl := range m.workloads() {
			if matches(sel, wl.Labels) {
				selected = append(selected, wl)
			}
		}
		if len(selected) == 0 {
			add("%s: selects no pod template", where)
			continue
		}
		for _, p := range list(s, "spec", "ports") {
			target := at(p, "targetPort")
			if target == nil {
				target = at(p, "port")
			}
			for _, wl := range selected {
				found := false
				for _, c := range containersOf(wl.Spec) {
					named, nums := containerPorts(c)
					if n, ok := target.(string); ok {
						_, found = named[n]
					} else {
						found = slices.Contains(nums, target.(int))
					}
					if found {
						break
					}
				}
				if !found {
					add("%s: port %s targets %v, which %s %s does not expose", where, str(p, "name"), target, wl.Kind, wl.Name)
				}
			}
		}
	}

	for _, sm := range m.sorted("ServiceMonitor") {
		where := "ServiceMonitor " + str(sm, "metadata", "name")
		sel := mp(sm, "spec", "selector", "matchLabels")
		var svcs []kobj
		for _, s := range m.sorted("Service") {
			if matches(sel, mp(s, "metadata", "labels")) {
				svcs = append(svcs, s)
			}
		}
		if len(svcs) == 0 {
			add("%s: selects no Service", where)
		}
		for _, e := range list(sm, "spec", "endpoints") {
			if p := str(e, "path"); p != "" && p != "/metrics" {
				add("%s: scrapes %s; the binaries serve /metrics", where, p)
			}
			for _, s := range svcs {
				found := false
				for _, p := range list(s, "spec", "ports") {
					found = found || str(p, "name") == str(e, "port")
				}
				if !found {
					add("%s: endpoint port %s is not a port of Service %s", where, str(e, "port"), str(s, "metadata", "name"))
				}
			}
		}
	}

	for _, pdb := range m.sorted("PodDisruptionBudget") {
		where := "PodDisruptionBudget " + str(pdb, "metadata", "name")
		sel := mp(pdb, "spec", "selector", "matchLabels")
		var selected []string
		for _, wl := range m.workloads() {
			if matches(sel, wl.Labels) {
				selected = append(selected, wl.Kind+" "+wl.Name)
			}
		}
		if len(selected) != 1 || selected[0] != wwhere {
			add("%s: selects %v, want exactly the worker %s", where, selected, wwhere)
		}
		if at(pdb, "spec", "minAvailable") != nil || at(pdb, "spec", "maxUnavailable") == nil {
			add("%s: use maxUnavailable; minAvailable blocks node drains when the fleet is scaled down", where)
		}
	}

	sos := m.sorted("ScaledObject")
	if len(sos) != 1 {
		add("want one ScaledObject, found %d", len(sos))
		return problems
	}
	so := sos[0]
	where := "ScaledObject " + str(so, "metadata", "name")
	ref := mp(so, "spec", "scaleTargetRef")
	if k := str(ref, "kind"); (k != "" && k != "Deployment") || str(ref, "name") != w.wl.Name {
		add("%s: scales %s %s, but the worker is Deployment %s", where, str(ref, "kind"), str(ref, "name"), w.wl.Name)
	}
	if at(w.wl.Obj, "spec", "replicas") != nil {
		add("%s: sets replicas, which KEDA owns: every apply would fight the autoscaler", wwhere)
	}
	if n := str(ref, "envSourceContainerName"); n != "" && n != str(w.c, "name") {
		add("%s: envSourceContainerName %s is not the worker container %s", where, n, str(w.c, "name"))
	}
	minR, _ := at(so, "spec", "minReplicaCount").(int)
	maxR, _ := at(so, "spec", "maxReplicaCount").(int)
	if minR != 0 {
		add("%s: minReplicaCount %d; the fleet scales to zero when the queue is empty", where, minR)
	}
	if maxR < 1 {
		add("%s: no maxReplicaCount", where)
	}
	budget, err := strconv.Atoi(str(so, "metadata", "annotations", budgetAnnotation))
	if err != nil {
		add("%s: annotation %s must state the Postgres connection budget", where, budgetAnnotation)
	} else if need := maxR * workerPostgresConns(w.timing.Concurrency); need > budget {
		add("%s: %d replicas x %d connections = %d Postgres connections, over the budget of %d (%s)", where, maxR, workerPostgresConns(w.timing.Concurrency), need, budget, budgetAnnotation)
	}
	triggers := list(so, "spec", "triggers")
	if len(triggers) != 1 || str(triggers[0], "type") != "aws-sqs-queue" {
		add("%s: want one aws-sqs-queue trigger", where)
		return problems
	}
	md := mp(triggers[0], "metadata")
	queueURL := str(md, "queueURL")
	if e := str(md, "queueURLFromEnv"); e != "" {
		v, ok := w.env[e]
		if !ok {
			add("%s: queueURLFromEnv %s is not in the worker container's environment", where, e)
		}
		queueURL = v
	}
	if queueURL != w.env["KEYMIGRATE_QUEUE_URL"] {
		add("%s: scales on queue %q, but the workers read %q", where, queueURL, w.env["KEYMIGRATE_QUEUE_URL"])
	}
	if r := str(md, "awsRegion"); r != w.env["AWS_REGION"] {
		add("%s: awsRegion %s, but the worker's AWS_REGION is %q", where, r, w.env["AWS_REGION"])
	}
	if ql, err := strconv.Atoi(str(md, "queueLength")); err != nil {
		add("%s: queueLength %q is not a number", where, str(md, "queueLength"))
	} else if ql < w.timing.Concurrency {
		add("%s: queueLength %d is below the worker's concurrency %d: the messages a busy replica holds would ask for more replicas", where, ql, w.timing.Concurrency)
	}
	if _, err := strconv.Atoi(str(md, "activationQueueLength")); err != nil {
		add("%s: activationQueueLength must be set (the depth that wakes the fleet from zero)", where)
	}
	if str(md, "scaleOnInFlight") == "false" {
		add("%s: scaleOnInFlight false would scale workers away while they hold messages", where)
	}
	problems = append(problems, prefix(where, m.checkURL("awsEndpoint", str(md, "awsEndpoint"), str(so, "metadata", "namespace")))...)

	taName := str(triggers[0], "authenticationRef", "name")
	ta := m.get("TriggerAuthentication", taName)
	if ta == nil {
		add("%s: TriggerAuthentication %q does not exist", where, taName)
		return problems
	}
	twhere := "TriggerAuthentication " + taName
	switch {
	case mp(ta, "spec", "podIdentity") != nil:
		pi := mp(ta, "spec", "podIdentity")
		if str(pi, "provider") != "aws" {
			add("%s: podIdentity provider %q, want aws", twhere, str(pi, "provider"))
		}
		sa := m.get("ServiceAccount", str(w.wl.Spec, "serviceAccountName"))
		if str(pi, "identityOwner") == "workload" && str(sa, "metadata", "annotations", "eks.amazonaws.com/role-arn") == "" {
			add("%s: identityOwner workload, but the worker's service account names no role", twhere)
		}
	case list(ta, "spec", "secretTargetRef") != nil:
		for _, r := range list(ta, "spec", "secretTargetRef") {
			src := m.get("Secret", str(r, "name"))
			keys, _ := m.source("Secret", str(r, "name"))
			if _, ok := keys[str(r, "key")]; src == nil || !ok {
				add("%s: parameter %s takes key %s of Secret %s, which does not exist", twhere, str(r, "parameter"), str(r, "key"), str(r, "name"))
			}
		}
	default:
		add("%s: neither podIdentity nor secretTargetRef", twhere)
	}
	return problems
}

// renderChecked renders a kustomization and checks it.
func renderChecked(t *testing.T, b *binaries, dir string) []string {
	t.Helper()
	objs, err := render(dir)
	require.NoError(t, err)
	var external map[string][]string
	if strings.HasSuffix(dir, "base") {
		external = externalSecrets
	}
	return checkManifests(newManifests(objs, external), b, readDockerfile(t).user(t))
}

// TestKubernetesManifests renders the base and the local overlay and checks
// every cross-reference: names, labels, ports, probes, environment, the KEDA
// trigger and the worker's timing.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	b := buildBinaries(t)
	for _, dir := range kustomizeDirs() {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			requireNoProblems(t, renderChecked(t, b, filepath.FromSlash(dir)))
		})
	}

	// The local overlay runs the compose file's servers: same images.
	objs, err := render(filepath.FromSlash("k8s/overlays/local"))
	require.NoError(t, err)
	p, err := loadCompose(readCompose(t))
	require.NoError(t, err)
	for _, o := range objs {
		spec := podSpec(o)
		for _, c := range containersOf(spec) {
			if s, ok := p.Services[str(c, "name")]; ok && !isKeymigrate(c) {
				require.Equal(t, s.Image, str(c, "image"), "%s runs the image docker-compose.yml runs", str(c, "name"))
			}
			if isKeymigrate(c) {
				require.Equal(t, p.Services["worker"].Image, str(c, "image"), "the local overlay runs the image docker compose builds")
			}
		}
	}
}

// TestKubernetesDrift shows that the checks catch what drifts: each edit is one
// a person could make to a manifest, and each must be reported.
func TestKubernetesDrift(t *testing.T) {
	t.Parallel()
	b := buildBinaries(t)
	cases := []struct {
		name, file, old, new, render, want string
	}{
		{"container port changed", "base/worker.yaml", "containerPort: 9090", "containerPort: 9091", "base",
			"serves /healthz, /readyz and /metrics on 9090 (--listen :9090) but exposes [9091]"},
		{"listen variable renamed", "base/worker.yaml", "name: KEYMIGRATE_LISTEN", "name: KEYMIGRATE_LISTEN_ADDR", "base",
			"sets KEYMIGRATE_LISTEN_ADDR, which worker does not read"},
		{"config key renamed", "base/config.yaml", "KEYMIGRATE_BUCKET:", "KEYMIGRATE_S3_BUCKET:", "base",
			"does not set KEYMIGRATE_BUCKET, which worker requires"},
		{"service target port renamed", "base/metrics.yaml", "targetPort: metrics", "targetPort: http", "base",
			"Service keymigrate-metrics: port metrics targets http, which Deployment keymigrate-worker does not expose"},
		{"service monitor port renamed", "base/metrics.yaml", "    - port: metrics", "    - port: web", "base",
			"ServiceMonitor keymigrate: endpoint port web is not a port of Service keymigrate-metrics"},
		{"probe path changed", "base/worker.yaml", "path: /readyz", "path: /ready", "base",
			"readinessProbe asks /ready; the binaries serve /readyz"},
		{"grace period too short", "base/worker.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 30", "base",
			"kills the worker 30s after SIGTERM, but a graceful drain takes up to 55s"},
		{"queueLength below concurrency", "base/scaledobject.yaml", `queueLength: "16"`, `queueLength: "4"`, "base",
			"queueLength 4 is below the worker's concurrency 16"},
		{"scale target renamed", "base/scaledobject.yaml", "    name: keymigrate-worker\n    envSource", "    name: keymigrate-workers\n    envSource", "base",
			"scales Deployment keymigrate-workers, but the worker is Deployment keymigrate-worker"},
		{"region drift", "base/config.yaml", "AWS_REGION: eu-west-1", "AWS_REGION: us-east-1", "base",
			"awsRegion eu-west-1, but the worker's AWS_REGION is \"us-east-1\""},
		{"too many replicas for Postgres", "base/scaledobject.yaml", "maxReplicaCount: 10", "maxReplicaCount: 40", "base",
			"40 replicas x 20 connections = 800 Postgres connections, over the budget of 200"},
		{"pdb selects nothing", "base/pdb.yaml", "      app.kubernetes.io/component: worker", "      app.kubernetes.io/component: workers", "base",
			"PodDisruptionBudget keymigrate-worker: selects [], want exactly the worker"},
		{"secret key renamed", "base/worker.yaml", "key: DATABASE_URL", "key: DSN", "base",
			"DATABASE_URL takes key DSN of Secret keymigrate-database, which does not exist"},
		{"local endpoint port changed", "overlays/local/config.yaml", "AWS_ENDPOINT_URL_SQS: http://fauxqs:4566", "AWS_ENDPOINT_URL_SQS: http://fauxqs:4567", "overlays/local",
			"AWS_ENDPOINT_URL_SQS points at port 4567, but Service fauxqs serves [4566]"},
		{"local server renamed", "overlays/local/servers.yaml", "kind: Service\nmetadata:\n  name: fauxqs", "kind: Service\nmetadata:\n  name: sqs", "overlays/local",
			"AWS_ENDPOINT_URL_SQS points at fauxqs, which is not a Service"},
		{"local queue name changed", "overlays/local/producer.yaml", `"--queue-name", "keymigrate",`, `"--queue-name", "photos",`, "overlays/local",
			`setup creates --queue-name "photos" but KEYMIGRATE_QUEUE_URL is http://fauxqs:4566/000000000000/keymigrate`},
		{"local server port changed", "overlays/local/servers.yaml", "containerPort: 7070", "containerPort: 7071", "overlays/local",
			"container versitygw: the server listens on 7070 (its own configuration) but the container exposes [7071]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "k8s")
			require.NoError(t, os.CopyFS(dir, os.DirFS("k8s")))
			f := filepath.Join(dir, filepath.FromSlash(tc.file))
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			require.Contains(t, string(data), tc.old)
			require.NoError(t, os.WriteFile(f, []byte(strings.Replace(string(data), tc.old, tc.new, 1)), 0o600))
			problems := renderChecked(t, b, filepath.Join(dir, filepath.FromSlash(tc.render)))
			require.NotEmpty(t, problems)
			require.Contains(t, strings.Join(problems, "\n"), tc.want)
		})
	}
}
