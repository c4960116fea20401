package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// kubeStateMetrics are the metrics the alerts take from kube-state-metrics, a
// cluster component this repository does not ship (docs/kubernetes.md,
// "Alerts"); docs/metrics/workload/{pod,job}-metrics.md of
// kubernetes/kube-state-metrics v2.20 list them as STABLE.
var kubeStateMetrics = []string{
	"kube_pod_container_status_restarts_total",
	"kube_pod_container_status_ready",
	"kube_job_status_failed",
}

// upcomingJobs are the Indexed Jobs of issue 17 that deploy/k8s does not hold
// yet: the alerts watch them from now on. Once they are in the manifests they
// are found there too.
var upcomingJobs = []string{"keymigrate-verify", "keymigrate-cleanup"}

// vocabulary is what the dashboard's and the alerts' PromQL may name.
type vocabulary struct {
	metrics    map[string]bool     // what internal/wiring/observe exports (registeredMetrics)
	external   map[string]string   // the other metrics, with their source
	cloudWatch map[string][]string // the CloudWatch exporter's metrics, with their queues
	outcomes   []string            // the values of worker.Outcome (workerOutcomes)
	queues     []string            // the queues of the base manifests (productionQueues)
	namespace  string              // the base manifests' namespace
	containers []string            // the containers of the base manifests' pods
	jobs       []string            // the keymigrate Jobs: the base manifests', and upcomingJobs
}

func newVocabulary(t *testing.T) vocabulary {
	t.Helper()
	e := readCloudWatchExporter(t)
	v := vocabulary{metrics: registeredMetrics(t), external: map[string]string{}, cloudWatch: e.series,
		outcomes: workerOutcomes(t), queues: productionQueues(t), jobs: slices.Clone(upcomingJobs)}
	for _, n := range e.metricNames() {
		v.external[n] = "CloudWatch, through the exporter of deploy/k8s/base/cloudwatch-exporter.yaml"
	}
	for _, n := range kubeStateMetrics {
		v.external[n] = "kube-state-metrics (a cluster component, not shipped here)"
	}
	for _, wl := range e.m.workloads() {
		v.namespace = wl.Namespace
		for _, c := range containersOf(wl.Spec) {
			v.containers = append(v.containers, c.Name)
		}
		if wl.Kind == "Job" {
			v.jobs = append(v.jobs, wl.Name)
		}
	}
	require.Contains(t, v.containers, "worker")
	require.Contains(t, v.jobs, "keymigrate-producer")
	return v
}

// workerOutcomes reads the values of keymigrate_photos_processed_total's
// outcome label, the constants of type worker.Outcome, from the worker
// package's source. Importing the package would compile the AWS SDK and pgx
// into this test binary, and again for the binaries the tests build
// (CGO_ENABLED=0 makes every package that uses net a different build), for
// seven strings.
func workerOutcomes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "worker", "*.go"))
	require.NoError(t, err)
	fset := token.NewFileSet()
	var out []string
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := goparser.ParseFile(fset, file, nil, goparser.SkipObjectResolution)
		require.NoError(t, err)
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if typ, ok := vs.Type.(*ast.Ident); !ok || typ.Name != "Outcome" {
					continue
				}
				require.Len(t, vs.Values, len(vs.Names), "%s: every worker.Outcome has its own value", fset.Position(vs.Pos()))
				for i := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					require.True(t, ok && lit.Kind == token.STRING, "%s: worker.%s is not a string literal", fset.Position(vs.Pos()), vs.Names[i])
					v, err := strconv.Unquote(lit.Value)
					require.NoError(t, err)
					out = append(out, v)
				}
			}
		}
	}
	require.Subset(t, out, []string{"migrated", "dead_lettered", "retry"}, "the outcomes the alerts use, read from worker/")
	return out
}

// registeredMetrics lists what a keymigrate process exports: every collector
// of observe.Metrics (read through Describe, so labelled vectors with no
// series yet count too) and the Go and process collectors. Histograms also
// answer to their _bucket, _sum and _count series.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := observe.New()
	names := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok || v.Field(i).IsNil() {
			continue
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			name := fqName.FindStringSubmatch(d.String())
			require.NotNil(t, name, "cannot read the name of %s", d)
			names[name[1]] = true
			if _, isHist := c.(prometheus.Histogram); isHist {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[name[1]+s] = true
				}
			}
		}
	}
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		names[f.GetName()] = true
		if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	require.True(t, names["keymigrate_photos_processed_total"], "the labelled counter is found before it has series")
	require.True(t, names["keymigrate_photo_seconds_bucket"])
	return names
}

// metricRef finds the metric names a PromQL expression uses: the families the
// dashboard and alerts may draw on all start with one of these prefixes.
var (
	metricRef    = regexp.MustCompile(`\b((?:keymigrate|aws_sqs|process|go)_[a-zA-Z0-9_]+)\b`)
	outcomeRef   = regexp.MustCompile(`outcome=~?"([^"]+)"`)
	queueNameRef = regexp.MustCompile(`dimension_QueueName=~?"([^"]+)"`)
)

// checkPromQL checks one expression's metric names and label values against
// what the code exports and the queues the manifests use.
func checkPromQL(where, expr string, v vocabulary) []string {
	var problems []string
	for _, m := range metricRef.FindAllStringSubmatch(expr, -1) {
		name := m[1]
		switch {
		case strings.HasPrefix(name, "aws_sqs_"):
			if v.cloudWatch[name] == nil {
				problems = append(problems, fmt.Sprintf("%s: %s is not a metric the CloudWatch exporter serves", where, name))
			}
		case !v.metrics[name]:
			problems = append(problems, fmt.Sprintf("%s: %s is not a metric internal/wiring/observe exports", where, name))
		}
	}
	for _, m := range outcomeRef.FindAllStringSubmatch(expr, -1) {
		for _, o := range strings.Split(m[1], "|") {
			if !slices.Contains(v.outcomes, o) {
				problems = append(problems, fmt.Sprintf("%s: outcome %q is not one the worker records", where, o))
			}
		}
	}
	for _, m := range queueNameRef.FindAllStringSubmatch(expr, -1) {
		for _, q := range strings.Split(m[1], "|") {
			if !slices.Contains(v.queues, q) {
				problems = append(problems, fmt.Sprintf("%s: queue %q is not one the manifests use (%v)", where, q, v.queues))
			}
		}
	}
	depth := map[rune]int{}
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, r := range expr {
		switch r {
		case '(', '[', '{':
			depth[r]++
		case ')', ']', '}':
			depth[pairs[r]]--
		}
	}
	for r, d := range depth {
		if d != 0 {
			problems = append(problems, fmt.Sprintf("%s: unbalanced %c in %q", where, r, expr))
		}
	}
	return problems
}

// productionQueues are the queue names of the base manifests' queue URLs.
func productionQueues(t *testing.T) []string {
	t.Helper()
	objs, err := kustomizeBuild(filepath.FromSlash("k8s/base"))
	require.NoError(t, err)
	m := newManifests(objs, externalSecrets)
	cfg, ok := m.source("ConfigMap", "keymigrate-config")
	require.True(t, ok)
	var queues []string
	for _, v := range []string{"KEYMIGRATE_QUEUE_URL", "KEYMIGRATE_DLQ_URL"} {
		u := cfg[v]
		require.NotEmpty(t, u)
		queues = append(queues, u[strings.LastIndex(u, "/")+1:])
	}
	return queues
}

// guardGroup is the rule group of the absent() guards.
const guardGroup = "keymigrate-absent"

// checkSelector checks one vector selector of a rule: the metric exists, and
// every label it matches on has a value the deployment produces.
func checkSelector(where string, vs *parser.VectorSelector, v vocabulary) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, where+": "+fmt.Sprintf(format, a...)) }
	switch {
	case vs.Name == "":
		add("%s selects no metric by name", vs)
	case v.metrics[vs.Name]:
	case v.external[vs.Name] != "":
	default:
		add("%s is not a metric internal/wiring/observe exports, nor one of the external metrics (CloudWatch exporter, kube-state-metrics)", vs.Name)
	}
	for _, m := range vs.LabelMatchers {
		values := []string{m.Value}
		if m.Type == labels.MatchRegexp {
			values = strings.Split(m.Value, "|")
		}
		switch m.Name {
		case labels.MetricName:
		case "outcome":
			for _, o := range values {
				if !slices.Contains(v.outcomes, o) {
					add("outcome %q is not one the worker records", o)
				}
			}
		case "dimension_QueueName":
			for _, q := range values {
				switch {
				case !slices.Contains(v.queues, q):
					add("queue %q is not one the manifests use (%v)", q, v.queues)
				case !slices.Contains(v.cloudWatch[vs.Name], q):
					add("the CloudWatch exporter serves no %s for queue %q", vs.Name, q)
				}
			}
		case "namespace":
			if m.Type != labels.MatchEqual || m.Value != v.namespace {
				add("%s: the manifests' namespace is %q", m, v.namespace)
			}
		case "container":
			if m.Type != labels.MatchEqual || !slices.Contains(v.containers, m.Value) {
				add("container %q is not one of the manifests' containers (%v)", m.Value, v.containers)
			}
		case "job_name":
			matched := false
			for _, j := range v.jobs {
				matched = matched || m.Matches(j)
			}
			if !matched {
				add("%s matches none of the keymigrate Jobs %v", m, v.jobs)
			}
		default:
			add("%s: nothing checks the values of label %s (add a check)", vs, m.Name)
		}
	}
	return problems
}

// checkRules checks the alert rules against the deployment: metrics and label
// values exist, every metric an alert reads has an absent() guard in
// guardGroup labelled with its name, and every keymigrate Job is watched.
func checkRules(rgs *rulefmt.RuleGroups, v vocabulary) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	alerts := map[string]bool{}
	usedBy := map[string][]string{}
	guarded := map[string]bool{}
	var jobMatchers []*labels.Matcher
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" {
				add("group %s: rule %q is not an alert", g.Name, r.Record)
				continue
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				add("%s: severity %q, want warning or critical", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				add("%s: needs a summary and a description", where)
			}
			expr, err := promParser.ParseExpr(r.Expr)
			if err != nil {
				add("%s: %v", where, err)
				continue
			}
			for _, vs := range selectors(expr) {
				problems = append(problems, checkSelector(where, vs, v)...)
				usedBy[vs.Name] = append(usedBy[vs.Name], r.Alert)
				for _, m := range vs.LabelMatchers {
					if m.Name == "job_name" && g.Name != guardGroup {
						jobMatchers = append(jobMatchers, m)
					}
				}
			}
			if g.Name != guardGroup {
				continue
			}
			guards := absentGuards(expr)
			if len(guards) == 0 {
				add("%s: a guard without absent()", where)
			}
			for _, gd := range guards {
				guarded[gd.metric] = true
				if gd.label != gd.metric {
					add("%s: absent(%s) is labelled metric=%q", where, gd.metric, gd.label)
				}
			}
		}
	}
	for _, name := range sortedNames(usedBy) {
		if !guarded[name] {
			add("%s (read by %v) has no absent() guard in group %s", name, slices.Compact(usedBy[name]), guardGroup)
		}
	}
	for _, j := range v.jobs {
		watched := false
		for _, m := range jobMatchers {
			watched = watched || m.Matches(j)
		}
		if !watched {
			add("Job %s is watched by no alert", j)
		}
	}
	// What issue 17 asks the alerts to catch.
	for _, a := range []string{"KeymigrateDLQGrowing", "KeymigratePhotosDeadLettered", "KeymigrateHighErrorRate", "KeymigrateThroughputStalled",
		"KeymigrateWorkerCrashLooping", "KeymigrateJobFailed"} {
		if !alerts[a] {
			add("no alert %s", a)
		}
	}
	// An alert that selects a metric several times reports it once.
	seen := map[string]bool{}
	return slices.DeleteFunc(problems, func(p string) bool {
		dup := seen[p]
		seen[p] = true
		return dup
	})
}

// readRules parses deploy/monitoring/alerts.yml as Prometheus does.
func readRules(t *testing.T) ([]byte, *rulefmt.RuleGroups) {
	t.Helper()
	data, err := os.ReadFile(filepath.FromSlash("monitoring/alerts.yml"))
	require.NoError(t, err)
	rgs, errs := parseRules(data)
	require.Empty(t, errs, "monitoring/alerts.yml")
	return data, rgs
}

// TestAlertRules checks the alert rules: Prometheus' own parser accepts them,
// every metric they use exists (in internal/wiring/observe, in the CloudWatch
// exporter's configuration, or in kube-state-metrics) and has an absent()
// guard, every outcome, queue, namespace, container and Job name is real,
// and the PrometheusRule in the manifests holds the same rules as
// deploy/monitoring/alerts.yml.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	v := newVocabulary(t)
	data, rgs := readRules(t)
	requireNoProblems(t, checkRules(rgs, v))

	// The PrometheusRule as kustomize renders it holds the file's groups.
	objs, err := kustomizeBuild(filepath.FromSlash("k8s/base"))
	require.NoError(t, err)
	var rendered []byte
	for _, o := range objs {
		if o.Kind == "PrometheusRule" {
			require.Nil(t, rendered, "one PrometheusRule")
			rendered = o.JSON
		}
	}
	require.NotNil(t, rendered, "the base renders a PrometheusRule")
	var cr struct {
		Spec struct {
			Groups json.RawMessage `json:"groups"`
		} `json:"spec"`
	}
	require.NoError(t, json.Unmarshal(rendered, &cr))
	fromFile, err := sigsyaml.YAMLToJSON(data)
	require.NoError(t, err)
	require.JSONEq(t, string(fromFile), `{"groups":`+string(cr.Spec.Groups)+`}`, "k8s/base/prometheusrule.yaml must hold the groups of monitoring/alerts.yml")

	// Drift: each edit is one a person could make, and each must be reported.
	for _, tc := range []struct{ old, new, want string }{
		{"keymigrate_s3_throttled_total[5m]", "keymigrate_s3_throttles_total[5m]", "keymigrate_s3_throttles_total is not a metric internal/wiring/observe exports"},
		{"keymigrate_s3_throttled_total[5m]", "keymigrate_s3_throttles_total[5m]", "keymigrate_s3_throttles_total (read by [KeymigrateS3Throttled]) has no absent() guard"},
		{`outcome="dead_lettered"`, `outcome="dead"`, `outcome "dead" is not one the worker records`},
		{`dimension_QueueName="keymigrate-dlq"`, `dimension_QueueName="photos-dlq"`, `queue "photos-dlq" is not one the manifests use`},
		{`visible_average{dimension_QueueName="keymigrate-dlq"}`, `visible_sum{dimension_QueueName="keymigrate-dlq"}`,
			"aws_sqs_approximate_number_of_messages_visible_sum is not a metric internal/wiring/observe exports, nor one of the external metrics"},
		{`container="worker"}[30m]`, `container="workers"}[30m]`, `container "workers" is not one of the manifests' containers`},
		{`{namespace="keymigrate",container="worker"}[30m]`, `{namespace="default",container="worker"}[30m]`, `namespace="default": the manifests' namespace is "keymigrate"`},
		{`job_name=~"keymigrate-(producer|verify|cleanup).*"`, `job_name=~"keymigrate-(producer|verify).*"`, "Job keymigrate-cleanup is watched by no alert"},
		{`label_replace(absent(keymigrate_paused)`, `label_replace(absent(keymigrate_pausd)`, "keymigrate_paused (read by [KeymigrateThroughputStalled]) has no absent() guard"},
		{`"metric", "keymigrate_paused"`, `"metric", "paused"`, `absent(keymigrate_paused) is labelled metric="paused"`},
		{`kube_job_status_failed{namespace="keymigrate",job_name=~"keymigrate-producer.*"}`, `kube_job_status_failed{namespace="keymigrate",job_name=~"migrate-producer.*"}`,
			`job_name=~"migrate-producer.*" matches none of the keymigrate Jobs`},
	} {
		require.Contains(t, string(data), tc.old)
		drifted, errs := parseRules([]byte(strings.Replace(string(data), tc.old, tc.new, 1)))
		require.Empty(t, errs)
		require.Contains(t, strings.Join(checkRules(drifted, v), "\n"), tc.want)
	}
}

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ X, Y, W, H int } `json:"gridPos"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func checkDashboard(d dashboard, v vocabulary) []string {
	var problems []string
	hasDS := false
	for _, tv := range d.Templating.List {
		hasDS = hasDS || (tv.Name == "datasource" && tv.Type == "datasource" && tv.Query == "prometheus")
	}
	if !hasDS {
		problems = append(problems, "no datasource variable: the dashboard must import into any Grafana")
	}
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range d.Panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] {
			problems = append(problems, where+": duplicate id")
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			problems = append(problems, where+": gridPos outside the 24-column grid")
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			problems = append(problems, where+": datasource must be ${datasource}")
		}
		if len(p.Targets) == 0 {
			problems = append(problems, where+": no query")
		}
		for _, tg := range p.Targets {
			problems = append(problems, checkPromQL(where, tg.Expr, v)...)
			for _, m := range metricRef.FindAllStringSubmatch(tg.Expr, -1) {
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m[1], "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	// Every keymigrate metric is on the dashboard somewhere: one that is not is
	// either dead or missing from the operator's view.
	var missing []string
	for name := range v.metrics {
		if strings.HasPrefix(name, observe.Namespace+"_") && !strings.HasSuffix(name, "_bucket") && !strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") && !used[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("metrics on no panel: %v", missing))
	}
	return problems
}

// TestGrafanaDashboard checks the dashboard's queries against the metrics the
// code exports, and that every keymigrate metric has a panel.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	v := newVocabulary(t)
	data, err := os.ReadFile(filepath.FromSlash("monitoring/grafana-dashboard.json"))
	require.NoError(t, err)
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	require.NoError(t, dec.Decode(&d))
	require.NotEmpty(t, d.UID)
	requireNoProblems(t, checkDashboard(d, v))

	var drifted dashboard
	require.NoError(t, json.Unmarshal([]byte(strings.Replace(string(data), "keymigrate_photos_in_flight", "keymigrate_in_flight", -1)), &drifted))
	problems := strings.Join(checkDashboard(drifted, v), "\n")
	require.Contains(t, problems, "keymigrate_in_flight is not a metric internal/wiring/observe exports")
	require.Contains(t, problems, "metrics on no panel: [keymigrate_photos_in_flight]")
}
