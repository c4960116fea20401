package deploy

import (
	"fmt"
	"maps"
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

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// externalSecrets are the Secrets the base expects the cluster to have (from
// a secret store, never from this repository), with their keys. The local
// overlay defines them; there, none may be missing.
var externalSecrets = map[string][]string{"keymigrate-database": {"DATABASE_URL"}}

// workerPostgresConns is what one worker opens at most: its pool is
// --db-max-conns, whatever its concurrency (cmd/worker/main.go).
func workerPostgresConns(t workerTiming) int { return t.DBMaxConns }

// budgetAnnotation on the ScaledObject states the Postgres connections the
// fleet may take at its largest (docs/kubernetes.md, "Sizing").
const budgetAnnotation = "keymigrate/postgres-connections"

// manifests indexes the rendered objects by kind and name, decoded into their
// API types.
type manifests struct {
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	services        map[string]*corev1.Service
	serviceAccounts map[string]*corev1.ServiceAccount
	deployments     map[string]*appsv1.Deployment
	jobs            map[string]*batchv1.Job
	cronJobs        map[string]*batchv1.CronJob
	pdbs            map[string]*policyv1.PodDisruptionBudget
	serviceMonitors map[string]*monv1.ServiceMonitor
	prometheusRules map[string]*monv1.PrometheusRule
	scaledObjects   map[string]*scaledObject
	triggerAuths    map[string]*triggerAuthentication
	external        map[string][]string
}

func newManifests(objs []object, external map[string][]string) *manifests {
	m := &manifests{external: external,
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		services: map[string]*corev1.Service{}, serviceAccounts: map[string]*corev1.ServiceAccount{},
		deployments: map[string]*appsv1.Deployment{}, jobs: map[string]*batchv1.Job{}, cronJobs: map[string]*batchv1.CronJob{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, serviceMonitors: map[string]*monv1.ServiceMonitor{},
		prometheusRules: map[string]*monv1.PrometheusRule{}, scaledObjects: map[string]*scaledObject{},
		triggerAuths: map[string]*triggerAuthentication{}}
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = v
		case *corev1.Secret:
			m.secrets[o.Name] = v
		case *corev1.Service:
			m.services[o.Name] = v
		case *corev1.ServiceAccount:
			m.serviceAccounts[o.Name] = v
		case *appsv1.Deployment:
			m.deployments[o.Name] = v
		case *batchv1.Job:
			m.jobs[o.Name] = v
		case *batchv1.CronJob:
			m.cronJobs[o.Name] = v
		case *policyv1.PodDisruptionBudget:
			m.pdbs[o.Name] = v
		case *monv1.ServiceMonitor:
			m.serviceMonitors[o.Name] = v
		case *monv1.PrometheusRule:
			m.prometheusRules[o.Name] = v
		case *scaledObject:
			m.scaledObjects[o.Name] = v
		case *triggerAuthentication:
			m.triggerAuths[o.Name] = v
		}
	}
	return m
}

// sortedNames returns a map's keys in order, for stable messages.
func sortedNames[V any](byName map[string]V) []string {
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// source reads the keys (and values) of a ConfigMap or Secret, or of an
// external Secret (values unknown).
func (m *manifests) source(kind, name string) (map[string]string, bool) {
	out := map[string]string{}
	switch kind {
	case "ConfigMap":
		cm, ok := m.configMaps[name]
		if !ok {
			return nil, false
		}
		maps.Copy(out, cm.Data)
	case "Secret":
		s, ok := m.secrets[name]
		if !ok {
			keys, ok := m.external[name]
			if !ok {
				return nil, false
			}
			for _, k := range keys {
				out[k] = ""
			}
			return out, true
		}
		// The typed decode has already base64-decoded data.
		for k, v := range s.Data {
			out[k] = string(v)
		}
		maps.Copy(out, s.StringData)
	default:
		return nil, false
	}
	return out, true
}

// workload is one pod template, with where it comes from.
type workload struct {
	Kind, Name, Namespace string
	Labels                map[string]string
	Spec                  *corev1.PodSpec
	// Selector and Replicas are a Deployment's; nil for a Job.
	Selector *metav1.LabelSelector
	Replicas *int32
	// Schedule is a CronJob's.
	Schedule string
	// Job is a Job's spec; nil for a Deployment.
	Job *batchv1.JobSpec
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, n := range sortedNames(m.deployments) {
		d := m.deployments[n]
		out = append(out, workload{Kind: "Deployment", Name: n, Namespace: d.Namespace, Labels: d.Spec.Template.Labels,
			Spec: &d.Spec.Template.Spec, Selector: d.Spec.Selector, Replicas: d.Spec.Replicas})
	}
	for _, n := range sortedNames(m.jobs) {
		j := m.jobs[n]
		out = append(out, workload{Kind: "Job", Name: n, Namespace: j.Namespace, Labels: j.Spec.Template.Labels, Spec: &j.Spec.Template.Spec, Job: &j.Spec})
	}
	for _, n := range sortedNames(m.cronJobs) {
		cj := m.cronJobs[n]
		tpl := &cj.Spec.JobTemplate.Spec.Template
		out = append(out, workload{Kind: "CronJob", Name: n, Namespace: cj.Namespace, Labels: tpl.Labels, Spec: &tpl.Spec, Schedule: cj.Spec.Schedule})
	}
	return out
}

// containersOf returns a pod's init containers, then its containers.
func containersOf(spec *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range spec.InitContainers {
		out = append(out, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	return out
}

// isKeymigrate reports whether a container runs the keymigrate image.
func isKeymigrate(c *corev1.Container) bool {
	name, _ := splitImage(c.Image)
	return path.Base(name) == "keymigrate"
}

func containerPorts(c *corev1.Container) (map[string]int, []int) {
	named := map[string]int{}
	var nums []int
	for _, p := range c.Ports {
		nums = append(nums, int(p.ContainerPort))
		if p.Name != "" {
			named[p.Name] = int(p.ContainerPort)
		}
	}
	return named, nums
}

// argv is a container's command line: command, then args.
func argv(c *corev1.Container) []string {
	return append(slices.Clone(c.Command), c.Args...)
}

// matches reports whether labels carry every selector label.
func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}

// matchLabels is a label selector's matchLabels, nil for no selector.
func matchLabels(s *metav1.LabelSelector) map[string]string {
	if s == nil {
		return nil
	}
	return s.MatchLabels
}

// resolveEnv is a container's environment as Kubernetes builds it: envFrom
// first, then env on top; every reference must resolve.
func (m *manifests) resolveEnv(c *corev1.Container) (map[string]string, []string) {
	env := map[string]string{}
	var problems []string
	from := func(kind, ref string) {
		src, ok := m.source(kind, ref)
		if !ok {
			problems = append(problems, fmt.Sprintf("envFrom %s %s, which does not exist", kind, ref))
		}
		maps.Copy(env, src)
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			from("ConfigMap", ef.ConfigMapRef.Name)
		}
		if ef.SecretRef != nil {
			from("Secret", ef.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
			continue
		}
		env[e.Name] = ""
		keyRef := func(kind, ref, key string) {
			src, ok := m.source(kind, ref)
			v, hasKey := src[key]
			if !ok || !hasKey {
				problems = append(problems, fmt.Sprintf("%s takes key %s of %s %s, which does not exist", e.Name, key, kind, ref))
			}
			env[e.Name] = v
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			keyRef("ConfigMap", r.Name, r.Key)
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			keyRef("Secret", r.Name, r.Key)
		}
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
	s := m.services[svc]
	if s == nil {
		return append(problems, fmt.Sprintf("%s points at %s, which is not a Service", what, svc))
	}
	var ports []int
	for _, p := range s.Spec.Ports {
		ports = append(ports, int(p.Port))
	}
	if !slices.Contains(ports, urlPort(u)) {
		problems = append(problems, fmt.Sprintf("%s points at port %d, but Service %s serves %v", what, urlPort(u), svc, ports))
	}
	return problems
}

// probes are a container's HTTP probes, by field name.
func probes(c *corev1.Container) map[string]*corev1.HTTPGetAction {
	out := map[string]*corev1.HTTPGetAction{}
	for name, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		if p != nil && p.HTTPGet != nil {
			out[name] = p.HTTPGet
		}
	}
	return out
}

var awsQueueURL = regexp.MustCompile(`^https://sqs\.([a-z0-9-]+)\.amazonaws\.com/\d{12}/[A-Za-z0-9_-]+$`)

// checkManifests returns every way the rendered manifests disagree with the
// binaries or with each other. uid is the Dockerfile's USER.
func checkManifests(m *manifests, b *binaries, uid int) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	type worker struct {
		wl     workload
		c      *corev1.Container
		env    map[string]string
		timing workerTiming
		args   *parsedArgs
	}
	var workers []worker
	type sweeper struct {
		wl   workload
		args *parsedArgs
		env  map[string]string
	}
	var sweepers []sweeper
	images := map[string][]string{}
	queueURLs := map[string]bool{}
	for _, wl := range m.workloads() {
		where := wl.Kind + " " + wl.Name
		if wl.Kind == "Deployment" && !matches(matchLabels(wl.Selector), wl.Labels) {
			add("%s: its selector does not match its pod template's labels", where)
		}
		runsKeymigrate := false
		for _, c := range containersOf(wl.Spec) {
			cwhere := fmt.Sprintf("%s container %s", where, c.Name)
			env, ep := m.resolveEnv(c)
			problems = append(problems, prefix(cwhere, ep)...)
			named, nums := containerPorts(c)
			hgs := probes(c)
			// Probes must name a port the container has.
			for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
				hg := hgs[probe]
				if hg == nil {
					continue
				}
				port := hg.Port.IntValue()
				if hg.Port.Type == intstr.String {
					n, ok := named[hg.Port.StrVal]
					if !ok {
						add("%s: %s uses port %q, which the container does not name", cwhere, probe, hg.Port.StrVal)
						continue
					}
					port = n
				}
				if !slices.Contains(nums, port) {
					add("%s: %s uses port %v, which the container does not expose", cwhere, probe, port)
				}
			}
			if !isKeymigrate(c) {
				if port, err := serverPort(c.Image, argv(c), env); err != nil {
					add("%s: %v", cwhere, err)
				} else if !slices.Contains(nums, port) {
					add("%s: the server listens on %d (its own configuration) but the container exposes %v", cwhere, port, nums)
				}
				continue
			}
			runsKeymigrate = true
			images[c.Image] = append(images[c.Image], cwhere)
			args, cp := b.checkContainer(container{Where: cwhere, Argv: argv(c), Env: env, Ports: nums})
			problems = append(problems, cp...)
			if args == nil {
				continue
			}
			for _, v := range []string{"DATABASE_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "KEYMIGRATE_QUEUE_URL", "KEYMIGRATE_DLQ_URL"} {
				problems = append(problems, prefix(cwhere, m.checkURL(v, env[v], wl.Namespace))...)
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
				hg := hgs[probe]
				if hg == nil {
					continue
				}
				if hg.Path != want {
					add("%s: %s asks %s; the binaries serve %s for it", cwhere, probe, hg.Path, want)
				}
				port := hg.Port.IntValue()
				if hg.Port.Type == intstr.String {
					port = named[hg.Port.StrVal]
				}
				if port != listenPort {
					add("%s: %s asks port %v, but the binary listens on %q", cwhere, probe, port, listen)
				}
			}
			switch args.cmd.Path {
			case "worker":
				timing, tp := timingOf(args, env)
				problems = append(problems, prefix(cwhere, tp)...)
				workers = append(workers, worker{wl: wl, c: c, env: env, timing: timing, args: args})
				if d, _ := args.setting(env, "drain"); d == "true" {
					add("%s: --drain makes a worker exit when the queue is empty, and the Deployment restart it", cwhere)
				}
				if c.LivenessProbe == nil {
					add("%s: no livenessProbe", cwhere)
				}
				if c.ReadinessProbe == nil {
					add("%s: no readinessProbe", cwhere)
				}
				for _, r := range []struct {
					list corev1.ResourceList
					what string
					name corev1.ResourceName
				}{{c.Resources.Requests, "requests", corev1.ResourceCPU}, {c.Resources.Requests, "requests", corev1.ResourceMemory}, {c.Resources.Limits, "limits", corev1.ResourceMemory}} {
					if _, ok := r.list[r.name]; !ok {
						add("%s: no resources.%s.%s", cwhere, r.what, r.name)
					}
				}
			case "migratectl sweep":
				if wl.Kind != "CronJob" {
					add("%s: the sweeper runs one pass at a time, as a CronJob", cwhere)
				}
				sweepers = append(sweepers, sweeper{wl: wl, args: args, env: env})
			case "producer":
				if rp := wl.Spec.RestartPolicy; wl.Kind != "Job" || (rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever) {
					add("%s: the producer runs once, as a Job", cwhere)
				}
			case "migratectl verify":
				problems = append(problems, prefix(cwhere, checkVerifyJob(wl, args, env))...)
			}
		}
		if !runsKeymigrate {
			continue
		}
		if sa := wl.Spec.ServiceAccountName; m.serviceAccounts[sa] == nil {
			add("%s: service account %q does not exist", where, sa)
		}
		sc := wl.Spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != int64(uid) {
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
	grace := int64(30) // Kubernetes' default
	if g := w.wl.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	problems = append(problems, prefix(wwhere+" (terminationGracePeriodSeconds)", w.timing.check(time.Duration(grace)*time.Second))...)
	for _, sw := range sweepers {
		problems = append(problems, checkSweeper(sw.wl, sw.args, sw.env, w.args, w.env)...)
	}

	// Services select pods and target their ports.
	for _, name := range sortedNames(m.services) {
		s := m.services[name]
		where := "Service " + name
		var selected []workload
		for _, wl := range m.workloads() {
			if matches(s.Spec.Selector, wl.Labels) {
				selected = append(selected, wl)
			}
		}
		if len(selected) == 0 {
			add("%s: selects no pod template", where)
			continue
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target == (intstr.IntOrString{}) {
				target = intstr.FromInt32(p.Port) // Kubernetes' default
			}
			for _, wl := range selected {
				found := false
				for _, c := range containersOf(wl.Spec) {
					named, nums := containerPorts(c)
					if target.Type == intstr.String {
						_, found = named[target.StrVal]
					} else {
						found = slices.Contains(nums, target.IntValue())
					}
					if found {
						break
					}
				}
				if !found {
					add("%s: port %s targets %s, which %s %s does not expose", where, p.Name, target.String(), wl.Kind, wl.Name)
				}
			}
		}
	}

	for _, name := range sortedNames(m.serviceMonitors) {
		sm := m.serviceMonitors[name]
		where := "ServiceMonitor " + name
		var svcs []string
		for _, sn := range sortedNames(m.services) {
			if matches(sm.Spec.Selector.MatchLabels, m.services[sn].Labels) {
				svcs = append(svcs, sn)
			}
		}
		if len(svcs) == 0 {
			add("%s: selects no Service", where)
		}
		for _, e := range sm.Spec.Endpoints {
			if e.Path != "" && e.Path != "/metrics" {
				add("%s: scrapes %s; the binaries serve /metrics", where, e.Path)
			}
			for _, sn := range svcs {
				found := false
				for _, p := range m.services[sn].Spec.Ports {
					found = found || p.Name == e.Port
				}
				if !found {
					add("%s: endpoint port %s is not a port of Service %s", where, e.Port, sn)
				}
			}
		}
	}

	for _, name := range sortedNames(m.pdbs) {
		pdb := m.pdbs[name]
		where := "PodDisruptionBudget " + name
		var selected []string
		for _, wl := range m.workloads() {
			if matches(matchLabels(pdb.Spec.Selector), wl.Labels) {
				selected = append(selected, wl.Kind+" "+wl.Name)
			}
		}
		if len(selected) != 1 || selected[0] != wwhere {
			add("%s: selects %v, want exactly the worker %s", where, selected, wwhere)
		}
		if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil {
			add("%s: use maxUnavailable; minAvailable blocks node drains when the fleet is scaled down", where)
		}
	}

	if len(m.scaledObjects) != 1 {
		add("want one ScaledObject, found %d", len(m.scaledObjects))
		return problems
	}
	var so *scaledObject
	for _, v := range m.scaledObjects {
		so = v
	}
	where := "ScaledObject " + so.Name
	ref := so.Spec.ScaleTargetRef
	if k := ref.Kind; (k != "" && k != "Deployment") || ref.Name != w.wl.Name {
		add("%s: scales %s %s, but the worker is Deployment %s", where, ref.Kind, ref.Name, w.wl.Name)
	}
	if w.wl.Replicas != nil {
		add("%s: sets replicas, which KEDA owns: every apply would fight the autoscaler", wwhere)
	}
	if n := ref.EnvSourceContainerName; n != "" && n != w.c.Name {
		add("%s: envSourceContainerName %s is not the worker container %s", where, n, w.c.Name)
	}
	var minR, maxR int
	if so.Spec.MinReplicaCount != nil {
		minR = int(*so.Spec.MinReplicaCount)
	}
	if so.Spec.MaxReplicaCount != nil {
		maxR = int(*so.Spec.MaxReplicaCount)
	}
	if minR != 0 {
		add("%s: minReplicaCount %d; the fleet scales to zero when the queue is empty", where, minR)
	}
	if minR == 0 && len(sweepers) == 0 {
		add("%s: the fleet scales to zero, and no CronJob runs `migratectl sweep`: nothing finds the photos whose messages were lost while no worker runs", where)
	}
	if maxR < 1 {
		add("%s: no maxReplicaCount", where)
	}
	budget, err := strconv.Atoi(so.Annotations[budgetAnnotation])
	if err != nil {
		add("%s: annotation %s must state the Postgres connection budget", where, budgetAnnotation)
	} else if need := maxR * workerPostgresConns(w.timing); need > budget {
		add("%s: %d replicas x %d connections = %d Postgres connections, over the budget of %d (%s)", where, maxR, workerPostgresConns(w.timing), need, budget, budgetAnnotation)
	}
	triggers := so.Spec.Triggers
	if len(triggers) != 1 || triggers[0].Type != "aws-sqs-queue" {
		add("%s: want one aws-sqs-queue trigger", where)
		return problems
	}
	md := triggers[0].Metadata
	queueURL := md["queueURL"]
	if e := md["queueURLFromEnv"]; e != "" {
		v, ok := w.env[e]
		if !ok {
			add("%s: queueURLFromEnv %s is not in the worker container's environment", where, e)
		}
		queueURL = v
	}
	if queueURL != w.env["KEYMIGRATE_QUEUE_URL"] {
		add("%s: scales on queue %q, but the workers read %q", where, queueURL, w.env["KEYMIGRATE_QUEUE_URL"])
	}
	if r := md["awsRegion"]; r != w.env["AWS_REGION"] {
		add("%s: awsRegion %s, but the worker's AWS_REGION is %q", where, r, w.env["AWS_REGION"])
	}
	if ql, err := strconv.Atoi(md["queueLength"]); err != nil {
		add("%s: queueLength %q is not a number", where, md["queueLength"])
	} else if ql < w.timing.Concurrency {
		add("%s: queueLength %d is below the worker's concurrency %d: the messages a busy replica holds would ask for more replicas", where, ql, w.timing.Concurrency)
	}
	if _, err := strconv.Atoi(md["activationQueueLength"]); err != nil {
		add("%s: activationQueueLength must be set (the depth that wakes the fleet from zero)", where)
	}
	if md["scaleOnInFlight"] == "false" {
		add("%s: scaleOnInFlight false would scale workers away while they hold messages", where)
	}
	problems = append(problems, prefix(where, m.checkURL("awsEndpoint", md["awsEndpoint"], so.Namespace))...)

	var taName string
	if r := triggers[0].AuthenticationRef; r != nil {
		taName = r.Name
	}
	ta := m.triggerAuths[taName]
	if ta == nil {
		add("%s: TriggerAuthentication %q does not exist", where, taName)
		return problems
	}
	twhere := "TriggerAuthentication " + taName
	switch {
	case ta.Spec.PodIdentity != nil:
		pi := ta.Spec.PodIdentity
		if pi.Provider != "aws" {
			add("%s: podIdentity provider %q, want aws", twhere, pi.Provider)
		}
		sa := m.serviceAccounts[w.wl.Spec.ServiceAccountName]
		if pi.IdentityOwner == "workload" && (sa == nil || sa.Annotations["eks.amazonaws.com/role-arn"] == "") {
			add("%s: identityOwner workload, but the worker's service account names no role", twhere)
		}
	case ta.Spec.SecretTargetRef != nil:
		for _, r := range ta.Spec.SecretTargetRef {
			keys, ok := m.source("Secret", r.Name)
			if _, hasKey := keys[r.Key]; m.secrets[r.Name] == nil || !ok || !hasKey {
				add("%s: parameter %s takes key %s of Secret %s, which does not exist", twhere, r.Parameter, r.Key, r.Name)
			}
		}
	default:
		add("%s: neither podIdentity nor secretTargetRef", twhere)
	}
	return problems
}

// everyMinutes reads a schedule of the form "*/N * * * *" (or "* * * * *").
var everyMinutes = regexp.MustCompile(`^(\*|\*/(\d+)) \* \* \* \*$`)

// checkSweeper checks the sweeper's CronJob against the worker: the same
// --sweep-after and --control-interval (what counts as lost, and as a live
// worker), and a schedule no longer than --sweep-after, so that a lost message
// is found within twice --sweep-after of the queue emptying.
func checkSweeper(wl workload, args *parsedArgs, env map[string]string, wargs *parsedArgs, wenv map[string]string) []string {
	var problems []string
	where := wl.Kind + " " + wl.Name
	for _, flag := range []string{"sweep-after", "control-interval"} {
		mine, _ := args.setting(env, flag)
		theirs, _ := wargs.setting(wenv, flag)
		md, err1 := time.ParseDuration(mine)
		td, err2 := time.ParseDuration(theirs)
		if err1 != nil || err2 != nil || md != td {
			problems = append(problems, fmt.Sprintf("%s: --%s %s, but the workers use %s: the sweeper must judge lost messages as the workers do", where, flag, mine, theirs))
		}
	}
	m := everyMinutes.FindStringSubmatch(wl.Schedule)
	if m == nil {
		return append(problems, fmt.Sprintf("%s: schedule %q: write it as \"*/N * * * *\" so the bound on finding lost messages can be checked", where, wl.Schedule))
	}
	every := time.Minute
	if m[2] != "" {
		n, _ := strconv.Atoi(m[2])
		every = time.Duration(n) * time.Minute
	}
	after, _ := args.setting(env, "sweep-after")
	if d, err := time.ParseDuration(after); err == nil && every > d {
		problems = append(problems, fmt.Sprintf("%s: runs every %s, longer than --sweep-after %s: lost messages would wait longer than the docs state", where, every, d))
	}
	return problems
}

// renderChecked renders a kustomization and checks it.
func renderChecked(t *testing.T, b *binaries, dir string) []string {
	t.Helper()
	objs, err := kustomizeBuild(dir)
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
	objs, err := kustomizeBuild(filepath.FromSlash("k8s/overlays/local"))
	require.NoError(t, err)
	p, err := loadCompose(readCompose(t))
	require.NoError(t, err)
	for _, wl := range newManifests(objs, nil).workloads() {
		for _, c := range containersOf(wl.Spec) {
			if s, ok := p.Services[c.Name]; ok && !isKeymigrate(c) {
				require.Equal(t, s.Image, c.Image, "%s runs the image docker-compose.yml runs", c.Name)
			}
			if isKeymigrate(c) {
				require.Equal(t, p.Services["worker"].Image, c.Image, "the local overlay runs the image docker compose builds")
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
		{"sweeper left out", "base/kustomization.yaml", "  - sweeper.yaml\n", "", "base",
			"no CronJob runs `migratectl sweep`"},
		{"sweeper judges lost messages differently", "base/sweeper.yaml", `command: ["migratectl", "sweep"]`, `command: ["migratectl", "sweep", "--sweep-after", "5m"]`, "base",
			"--sweep-after 5m, but the workers use 10m0s"},
		{"sweeper scheduled too rarely", "base/sweeper.yaml", `schedule: "*/5 * * * *"`, `schedule: "*/30 * * * *"`, "base",
			"runs every 30m0s, longer than --sweep-after 10m0s"},
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
			"40 replicas x 8 connections = 320 Postgres connections, over the budget of 200"},
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
		{"verify shards and completions disagree", "base/verify.yaml", "completions: 8", "completions: 6", "base",
			"--shard $(JOB_COMPLETION_INDEX)/8, but completions is 6"},
		{"verify job not indexed", "base/verify.yaml", "completionMode: Indexed", "completionMode: NonIndexed", "base",
			"completionMode is not Indexed"},
		{"verify shard index hard-coded", "base/verify.yaml", `"$(JOB_COMPLETION_INDEX)/8"`, `"0/8"`, "base",
			`--shard "0/8": give $(JOB_COMPLETION_INDEX)/N`},
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

// checkVerifyJob checks a verify pass split across pods: an Indexed Job of N
// completions whose pod i runs `migratectl verify --shard i/N` (the index
// from JOB_COMPLETION_INDEX, which the Job controller sets), so that the N
// shards are exactly the pass's and each runs to its end once.
func checkVerifyJob(wl workload, args *parsedArgs, env map[string]string) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if wl.Job == nil {
		return []string{"verify runs a pass to its end: a Job, not a " + wl.Kind}
	}
	if rp := wl.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		add("restartPolicy %s: a verify shard that ends must not be restarted", rp)
	}
	if wl.Job.CompletionMode == nil || *wl.Job.CompletionMode != batchv1.IndexedCompletion {
		add("completionMode is not Indexed: the pods cannot tell which shard they are")
	}
	shard, _ := args.setting(env, "shard")
	index, n, ok := strings.Cut(shard, "/")
	if !ok || index != "$(JOB_COMPLETION_INDEX)" {
		add("--shard %q: give $(JOB_COMPLETION_INDEX)/N, so that pod i checks shard i", shard)
		return problems
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		add("--shard %q: N is not a number of shards", shard)
		return problems
	}
	if c := wl.Job.Completions; c == nil || int(*c) != count {
		add("--shard $(JOB_COMPLETION_INDEX)/%d, but completions is %v: shards would be missing or out of range", count, ptrString(c))
	}
	if p := wl.Job.Parallelism; p != nil && int(*p) > count {
		add("parallelism %d is above the %d shards", *p, count)
	}
	return problems
}

func ptrString(p *int32) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(int(*p))
}
