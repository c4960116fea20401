package deploy

// alerteval evaluates Prometheus alerting rules against recorded input series
// the way `promtool test rules` does, with Prometheus' own rule manager and
// PromQL engine, from a Go test. promtool's runner (cmd/promtool/unittest.go)
// is package main; this is the same loop rebuilt from the importable pieces:
//
//   - promql/promqltest.NewLazyLoader parses a `load <interval>` block in the
//     promtool series notation (`0+1x10`, `1 _ 3`, `stale`) and appends the
//     samples into an in-memory TSDB up to each evaluation time;
//   - rules.NewManager(...).LoadGroups turns the rule groups into
//     *rules.AlertingRule values (for, labels, templated annotations) exactly
//     as Prometheus does, from YAML served by an in-memory GroupLoader;
//   - model/rulefmt.Parse validates the file as `promtool check rules` does
//     (unknown fields, PromQL, templates).
//
// It lives in a test file so that only the tests compile Prometheus.

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"github.com/stretchr/testify/require"
)

// promParser is the PromQL parser with Prometheus' default options: the
// rules are loaded, evaluated and inspected with it.
var promParser = parser.NewParser(parser.Options{})

// inputSeries is one promtool input_series entry: a series and its values in
// the expanding notation, one value per minute from time 0.
type inputSeries struct {
	Series string // `keymigrate_dependency_up{dependency="postgres"}`
	Values string // `1 1 0x10`, `0+1x30`, `_x5 1`
}

// firingAlert is an alert in state firing: its full label set (alertname,
// the rule's labels, the series' labels) and its expanded annotations.
type firingAlert struct {
	Labels      map[string]string
	Annotations map[string]string
	Value       float64
}

func (a firingAlert) String() string { return labels.FromMap(a.Labels).String() }

// evalInterval is both the spacing of the input series and the evaluation
// interval (promtool's defaults are 1m for both).
const evalInterval = time.Minute

// parseRules parses a rule file as `promtool check rules` does.
func parseRules(data []byte) (*rulefmt.RuleGroups, []error) {
	return rulefmt.Parse(data, false, model.UTF8Validation, promParser, slog.New(slog.DiscardHandler))
}

// evalAlerts loads the rule groups, feeds the series, evaluates every group
// each minute from time 0 to the last of at, and returns the alerts firing at
// each of at (pending ones, whose `for` has not elapsed, are not), sorted by
// labels. Any load or evaluation error fails the test.
func evalAlerts(t testing.TB, rulesYAML []byte, series []inputSeries, at ...time.Duration) map[time.Duration][]firingAlert {
	t.Helper()
	require.NotEmpty(t, at, "alerteval: no evaluation time")

	var load strings.Builder
	fmt.Fprintf(&load, "load %s\n", model.Duration(evalInterval))
	for _, s := range series {
		fmt.Fprintf(&load, "  %s %s\n", s.Series, s.Values)
	}
	suite, err := promqltest.NewLazyLoader(load.String(), promqltest.LazyLoaderOpts{
		EnableAtModifier: true, EnableNegativeOffset: true, Parser: promParser,
	})
	require.NoError(t, err, "alerteval: input series")
	t.Cleanup(func() { require.NoError(t, suite.Close()) })
	suite.SubqueryInterval = evalInterval

	const ruleFile = "rules.yml" // names the groups; nothing is read from disk
	m := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:    rules.EngineQueryFunc(suite.QueryEngine(), suite.Storage()),
		AppendableV2: suite.Storage(), // ALERTS and ALERTS_FOR_STATE go here
		Context:      context.Background(),
		NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
		Logger:       slog.New(slog.DiscardHandler),
		Parser:       promParser,
		GroupLoader:  memLoader{ruleFile: rulesYAML},
	})
	byName, errs := m.LoadGroups(evalInterval, labels.EmptyLabels(), "", nil, false, ruleFile)
	require.Empty(t, errs, "alerteval: rules")
	groups := make([]*rules.Group, 0, len(byName))
	for _, g := range byName {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].Name() < groups[j].Name() })
	for _, g := range groups {
		for _, r := range g.Rules() {
			if ar, ok := r.(*rules.AlertingRule); ok {
				// As promtool: there is no `for` state to restore, so an
				// alert counts its `for` from the first evaluation.
				ar.SetRestored(true)
			}
		}
	}

	wanted := slices.Clone(at)
	slices.Sort(wanted)
	wanted = slices.Compact(wanted)
	out := make(map[time.Duration][]firingAlert, len(wanted))
	start := time.Unix(0, 0).UTC()
	next := 0
	for ts := start; !ts.After(start.Add(wanted[len(wanted)-1])); ts = ts.Add(evalInterval) {
		var loadErr error
		suite.WithSamplesTill(ts, func(err error) {
			if loadErr = err; err != nil {
				return
			}
			for _, g := range groups {
				g.Eval(suite.Context(), ts)
			}
		})
		require.NoError(t, loadErr, "alerteval: loading samples till %v", ts.Sub(start))
		for _, g := range groups {
			for _, r := range g.Rules() {
				require.NoError(t, r.LastError(), "alerteval: rule %s at %v", r.Name(), ts.Sub(start))
			}
		}
		// An evaluation time between two evaluations sees the earlier one, as
		// in promtool.
		for next < len(wanted) && wanted[next] < ts.Add(evalInterval).Sub(start) {
			out[wanted[next]] = firingAlerts(groups)
			next++
		}
	}
	return out
}

func firingAlerts(groups []*rules.Group) []firingAlert {
	out := []firingAlert{}
	for _, g := range groups {
		for _, r := range g.Rules() {
			ar, ok := r.(*rules.AlertingRule)
			if !ok {
				continue
			}
			for _, a := range ar.ActiveAlerts() {
				if a.State == rules.StateFiring {
					out = append(out, firingAlert{Labels: a.Labels.Map(), Annotations: a.Annotations.Map(), Value: a.Value})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// memLoader is a rules.GroupLoader that serves rule files from memory.
type memLoader map[string][]byte

func (l memLoader) Load(name string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	data, ok := l[name]
	if !ok {
		return nil, []error{fmt.Errorf("%s: no such rule file", name)}
	}
	return rulefmt.Parse(data, ignoreUnknownFields, scheme, promParser, slog.New(slog.DiscardHandler))
}

func (memLoader) Parse(query string) (parser.Expr, error) { return promParser.ParseExpr(query) }

// selectors returns the vector selectors of an expression, read from the
// PromQL AST.
func selectors(expr parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// metricNames returns the metric names an expression selects.
func metricNames(expr parser.Expr) []string {
	var names []string
	for _, vs := range selectors(expr) {
		names = append(names, vs.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// absentGuard is one absent(...) call: the metric it asks for and, if the
// call sits in label_replace(..., "metric", NAME, ...), that NAME.
type absentGuard struct{ metric, label string }

// absentGuards returns the absent() calls of an expression.
func absentGuards(expr parser.Expr) []absentGuard {
	var out []absentGuard
	parser.Inspect(expr, func(n parser.Node, path []parser.Node) error {
		call, ok := n.(*parser.Call)
		if !ok || call.Func.Name != "absent" {
			return nil
		}
		var g absentGuard
		for _, vs := range selectors(call.Args[0]) {
			g.metric = vs.Name
		}
		for i := len(path) - 1; i >= 0; i-- {
			if lr, ok := path[i].(*parser.Call); ok && lr.Func.Name == "label_replace" {
				if dst, _ := unwrapString(lr.Args[1]); dst == "metric" {
					g.label, _ = unwrapString(lr.Args[2])
				}
				break
			}
		}
		out = append(out, g)
		return nil
	})
	return out
}

func unwrapString(e parser.Expr) (string, bool) {
	for {
		switch v := e.(type) {
		case *parser.ParenExpr:
			e = v.Expr
		case *parser.StringLiteral:
			return v.Val, true
		default:
			return "", false
		}
	}
}

// The helper's own semantics, on small rule files: `for`, an absent() guard,
// the lookback after a series stops, and what rulefmt refuses.
func TestAlertEval(t *testing.T) {
	t.Parallel()
	const guard = `
groups:
  - name: g
    rules:
      - alert: Down
        expr: min by (dependency) (up_metric) == 0
        for: 5m
        labels: {severity: critical}
        annotations: {summary: "{{ $labels.dependency }} is down"}
      - alert: Missing
        expr: absent(up_metric{job="keymigrate"})
        for: 5m
        labels: {severity: warning}
        annotations: {summary: "no up_metric from job {{ $labels.job }}"}
`
	m := time.Minute
	got := evalAlerts(t, []byte(guard), []inputSeries{
		{`up_metric{job="keymigrate",dependency="postgres",pod="a"}`, `1 1 0x20`},
		{`up_metric{job="keymigrate",dependency="postgres",pod="b"}`, `1x22`},
	}, 4*m, 7*m)
	require.Empty(t, got[4*m], "down since 2m: pending, for 5m")
	require.Len(t, got[7*m], 1)
	require.Equal(t, map[string]string{"alertname": "Down", "dependency": "postgres", "severity": "critical"}, got[7*m][0].Labels)
	require.Equal(t, "postgres is down", got[7*m][0].Annotations["summary"])

	// The last sample is at 5m; the lookback window is (t-5m, t], so absent()
	// is 1 from 10m and the guard fires at 15m. absent() keeps the equality
	// matchers of its selector as labels.
	got = evalAlerts(t, []byte(guard), []inputSeries{{`up_metric{job="keymigrate",dependency="s3",pod="a"}`, `1x5`}}, 9*m, 14*m, 15*m)
	require.Empty(t, got[9*m])
	require.Empty(t, got[14*m])
	require.Len(t, got[15*m], 1)
	require.Equal(t, map[string]string{"alertname": "Missing", "job": "keymigrate", "severity": "warning"}, got[15*m][0].Labels)
	require.Equal(t, "no up_metric from job keymigrate", got[15*m][0].Annotations["summary"])

	for _, bad := range []string{
		strings.Replace(guard, "== 0", "== ", 1),             // PromQL
		strings.Replace(guard, "for: 5m", "fro: 5m", 1),      // an unknown field
		strings.Replace(guard, "{{ $labels.job }}", "{{", 1), // a template
	} {
		_, errs := parseRules([]byte(bad))
		require.NotEmpty(t, errs)
	}
}
