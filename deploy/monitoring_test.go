package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
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
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// cloudWatchMetrics are the metrics the dashboard and the alerts take from
// CloudWatch through YACE (queue depth is not something a worker knows), with
// the label YACE puts the queue name in.
var cloudWatchMetrics = map[string]bool{
	"aws_sqs_approximate_number_of_messages_visible_average":     true,
	"aws_sqs_approximate_number_of_messages_not_visible_average": true,
}

// vocabulary is what the dashboard's and the alerts' PromQL may name.
type vocabulary struct {
	metrics  map[string]bool // what internal/wiring/observe exports (registeredMetrics)
	outcomes []string        // the values of worker.Outcome (workerOutcomes)
	queues   []string        // the queues of the base manifests (productionQueues)
}

func newVocabulary(t *testing.T) vocabulary {
	t.Helper()
	return vocabulary{metrics: registeredMetrics(t), outcomes: workerOutcomes(t), queues: productionQueues(t)}
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
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
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
			if !cloudWatchMetrics[name] {
				problems = append(problems, fmt.Sprintf("%s: %s is not one of the documented CloudWatch metrics", where, name))
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

// ruleFile is a Prometheus rule file; unknown fields are refused.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name" json:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert" json:"alert"`
			Expr        string            `yaml:"expr" json:"expr"`
			For         string            `yaml:"for,omitempty" json:"for,omitempty"`
			Labels      map[string]string `yaml:"labels" json:"labels"`
			Annotations map[string]string `yaml:"annotations" json:"annotations"`
		} `yaml:"rules" json:"rules"`
	} `yaml:"groups" json:"groups"`
}

func checkRules(rf ruleFile, v vocabulary) []string {
	var problems []string
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			alerts[r.Alert] = true
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
				problems = append(problems, fmt.Sprintf("group %s: a rule without alert name or expression", g.Name))
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				problems = append(problems, fmt.Sprintf("%s: severity %q, want warning or critical", where, s))
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				problems = append(problems, fmt.Sprintf("%s: needs a summary and a description", where))
			}
			problems = append(problems, checkPromQL(where, r.Expr, v)...)
		}
	}
	// What the issue asks the alerts to catch.
	for _, a := range []string{"KeymigrateDLQGrowing", "KeymigrateHighErrorRate", "KeymigrateThroughputStalled"} {
		if !alerts[a] {
			problems = append(problems, "no alert "+a)
		}
	}
	return problems
}

func decodeStrict(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(v))
}

// TestAlertRules checks the alert rules: every metric they use exists (in
// internal/wiring/observe, or is one of the documented CloudWatch metrics), every
// outcome and queue name is real, and the PrometheusRule in the manifests
// holds the same rules as deploy/monitoring/alerts.yml.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	v := newVocabulary(t)

	data, err := os.ReadFile(filepath.FromSlash("monitoring/alerts.yml"))
	require.NoError(t, err)
	var rf ruleFile
	decodeStrict(t, data, &rf)
	requireNoProblems(t, checkRules(rf, v))

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

	// Drift: a renamed metric, an outcome that does not exist, another queue.
	for _, tc := range []struct{ old, new, want string }{
		{"keymigrate_s3_throttled_total", "keymigrate_s3_throttles_total", "keymigrate_s3_throttles_total is not a metric internal/wiring/observe exports"},
		{`outcome="dead_lettered"`, `outcome="dead"`, `outcome "dead" is not one the worker records`},
		{`dimension_QueueName="keymigrate-dlq"`, `dimension_QueueName="photos-dlq"`, `queue "photos-dlq" is not one the manifests use`},
	} {
		var drifted ruleFile
		require.Contains(t, string(data), tc.old)
		decodeStrict(t, []byte(strings.Replace(string(data), tc.old, tc.new, 1)), &drifted)
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
