package deploy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// The alert rules of deploy/monitoring/alerts.yml, evaluated by Prometheus'
// rule engine (alerteval_test.go) against recorded series: a fleet at work,
// and that fleet with one thing gone wrong. Every alert has a case in which
// it fires, with the labels it fires with, and one in which it stays quiet;
// every case lists every alert firing, so an alert that fires where it should
// not fails too. The series are named as the code and the exporters name
// them: a series whose metric no code or exporter produces fails the test
// unless the case says it stands for a renamed metric.

const (
	minute  = time.Minute
	workerA = "keymigrate-worker-6d5f8-a"
	workerB = "keymigrate-worker-6d5f8-b"
	// producerPod is the producer Job's pod, which exports keymigrate's
	// metrics while it runs.
	producerPod = "keymigrate-producer-x7k2p"
	mainQueue   = `aws_sqs_approximate_number_of_messages_visible_average{dimension_QueueName="keymigrate"}`
	deadQueue   = `aws_sqs_approximate_number_of_messages_visible_average{dimension_QueueName="keymigrate-dlq"}`
)

// seriesSet is the input of one case.
type seriesSet []inputSeries

// with returns s with each of more replacing the series of the same name and
// labels, or added.
func (s seriesSet) with(more ...inputSeries) seriesSet {
	out := slices.Clone(s)
	for _, m := range more {
		i := slices.IndexFunc(out, func(x inputSeries) bool { return x.Series == m.Series })
		if i >= 0 {
			out[i] = m
		} else {
			out = append(out, m)
		}
	}
	return out
}

// without returns s without the series whose text starts with one of
// prefixes (a metric name, or a name and some of its labels).
func (s seriesSet) without(prefixes ...string) seriesSet {
	return slices.DeleteFunc(slices.Clone(s), func(x inputSeries) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(x.Series, p) {
				return true
			}
		}
		return false
	})
}

// renamed returns s with the metric old called new.
func (s seriesSet) renamed(old, new string) seriesSet {
	out := slices.Clone(s)
	for i := range out {
		if rest, ok := strings.CutPrefix(out[i].Series, old+"{"); ok {
			out[i].Series = new + "{" + rest
		}
	}
	return out
}

func pod(metric, pod string, values string) inputSeries {
	return inputSeries{fmt.Sprintf(`%s{pod=%q}`, metric, pod), values}
}

// busyFleet is two workers migrating 99 photos a minute each (and handing one
// back for a retry), the producer enqueueing, the main queue draining and a
// dead-letter queue of 3, for 90 minutes: no alert fires.
func busyFleet() seriesSet {
	var s seriesSet
	for _, w := range []string{workerA, workerB} {
		for _, dep := range []string{"postgres", "s3", "sqs"} {
			s = append(s, inputSeries{fmt.Sprintf(`keymigrate_dependency_up{dependency=%q,pod=%q}`, dep, w), "1x90"})
		}
		s = append(s,
			pod("keymigrate_paused", w, "0x90"),
			pod("keymigrate_photos_rescued_total", w, "0x90"),
			pod("keymigrate_s3_rate_limit", w, "0x90"),
			pod("keymigrate_producer_found_total", w, "0x90"),
			pod("keymigrate_photo_seconds_count", w, "0+100x90"),
			inputSeries{fmt.Sprintf(`keymigrate_photos_processed_total{outcome="migrated",pod=%q}`, w), "0+99x90"},
			inputSeries{fmt.Sprintf(`keymigrate_photos_processed_total{outcome="retry",reason="s3_unavailable",pod=%q}`, w), "0+1x90"},
			inputSeries{fmt.Sprintf(`kube_pod_container_status_restarts_total{namespace="keymigrate",pod=%q,container="worker"}`, w), "0x90"},
			inputSeries{fmt.Sprintf(`kube_pod_container_status_ready{namespace="keymigrate",pod=%q,container="worker"}`, w), "1x90"},
		)
	}
	return append(s,
		pod("keymigrate_producer_found_total", producerPod, "0+1000x90"),
		inputSeries{fmt.Sprintf(`kube_pod_container_status_restarts_total{namespace="keymigrate",pod=%q,container="producer"}`, producerPod), "0x90"},
		inputSeries{`kube_job_status_failed{namespace="keymigrate",job_name="keymigrate-producer",reason=""}`, "0x90"},
		inputSeries{mainQueue, "5000-50x90"},
		inputSeries{deadQueue, "3x90"},
	)
}

// atRest is the fleet after the migration: KEDA scaled the workers to zero,
// the producer Job is deleted, the queues are empty and the exporter still
// serves them.
func atRest() seriesSet {
	return seriesSet{{mainQueue, "0x90"}, {deadQueue, "0x90"}}
}

// firing is one expected alert: its name and the labels it takes from the
// series (the rule's own labels, severity, are added from the rule).
func firing(alert string, labelPairs ...string) map[string]string {
	l := map[string]string{"alertname": alert}
	for i := 0; i+1 < len(labelPairs); i += 2 {
		l[labelPairs[i]] = labelPairs[i+1]
	}
	return l
}

// alertCase is one scenario.
type alertCase struct {
	name string
	// about are the alerts the case is about: each fires as want says, or is
	// shown to stay quiet.
	about   []string
	series  seriesSet
	renamed []string // metrics of series that nothing produces: the case is about a rename
	at      time.Duration
	want    []map[string]string // every alert firing at `at`
}

// everyAlert stands for all the rules' alerts in alertCase.about.
const everyAlert = "*"

var alertCases = []alertCase{
	{name: "a busy fleet", about: []string{everyAlert}, series: busyFleet(), at: 75 * minute},
	{name: "a fleet at rest", about: []string{everyAlert}, series: atRest(), at: 75 * minute},

	{name: "the DLQ grows by a message a minute", about: []string{"KeymigrateDLQGrowing"},
		series: busyFleet().with(inputSeries{deadQueue, "3+1x90"}), at: 60 * minute,
		want: []map[string]string{firing("KeymigrateDLQGrowing", "dimension_QueueName", "keymigrate-dlq")}},
	{name: "the DLQ drains after a redrive", about: []string{"KeymigrateDLQGrowing"},
		series: busyFleet().with(inputSeries{deadQueue, "40-1x40 0x50"}), at: 60 * minute},

	{name: "two photos a minute dead-lettered", about: []string{"KeymigratePhotosDeadLettered", "KeymigrateHighErrorRate"},
		series: busyFleet().with(inputSeries{fmt.Sprintf(`keymigrate_photos_processed_total{outcome="dead_lettered",reason="source_missing",pod=%q}`, workerA), "0+2x90"}),
		at:     60 * minute, want: []map[string]string{firing("KeymigratePhotosDeadLettered")}},
	{name: "one photo every two minutes dead-lettered", about: []string{"KeymigratePhotosDeadLettered"},
		series: busyFleet().with(inputSeries{fmt.Sprintf(`keymigrate_photos_processed_total{outcome="dead_lettered",reason="source_missing",pod=%q}`, workerA), "0+0.5x90"}),
		at:     60 * minute},

	{name: "one photo in ten handed back for a retry", about: []string{"KeymigrateHighErrorRate"},
		series: busyFleet().with(
			inputSeries{fmt.Sprintf(`keymigrate_photos_processed_total{outcome="retry",reason="s3_unavailable",pod=%q}`, workerA), "0+11x90"},
			inputSeries{fmt.Sprintf(`keymigrate_photos_processed_total{outcome="retry",reason="s3_unavailable",pod=%q}`, workerB), "0+11x90"}),
		at: 60 * minute, want: []map[string]string{firing("KeymigrateHighErrorRate")}},

	{name: "the workers stop settling photos at 30m", about: []string{"KeymigrateThroughputStalled", "KeymigrateHighErrorRate"},
		series: stalledAt30m(busyFleet()), at: 75 * minute,
		want: []map[string]string{firing("KeymigrateThroughputStalled")}},
	{name: "no worker at all while the queue holds photos (KEDA did not scale up)", about: []string{"KeymigrateThroughputStalled"},
		series: busyFleet().without("keymigrate_", "kube_").with(inputSeries{mainQueue, "5000x90"}), at: 20 * minute,
		want: []map[string]string{firing("KeymigrateThroughputStalled")}},
	{name: "workers that never settled a photo", about: []string{"KeymigrateThroughputStalled", "KeymigrateMetricMissing"},
		series: busyFleet().without("keymigrate_photos_processed_total").with(
			pod("keymigrate_photo_seconds_count", workerA, "0x90"), pod("keymigrate_photo_seconds_count", workerB, "0x90"),
			inputSeries{mainQueue, "5000x90"}),
		at: 20 * minute, want: []map[string]string{firing("KeymigrateThroughputStalled")}},
	{name: "the workers stop while the fleet is paused", about: []string{"KeymigrateThroughputStalled"},
		series: stalledAt30m(busyFleet()).with(pod("keymigrate_paused", workerA, "0x30 1x60"), pod("keymigrate_paused", workerB, "0x30 1x60")),
		at:     75 * minute},
	{name: "the image renamed the processed counter while photos migrate", about: []string{"KeymigrateThroughputStalled", "KeymigrateMetricMissing"},
		series:  busyFleet().renamed("keymigrate_photos_processed_total", "keymigrate_photos_settled_total"),
		renamed: []string{"keymigrate_photos_settled_total"}, at: 60 * minute,
		want: []map[string]string{firing("KeymigrateMetricMissing", "metric", "keymigrate_photos_processed_total")}},

	{name: "S3 throttles ten requests a second", about: []string{"KeymigrateS3Throttled", "KeymigrateMetricMissing"},
		series: busyFleet().with(
			inputSeries{fmt.Sprintf(`keymigrate_s3_throttled_total{operation="CopyObject",pod=%q}`, workerA), "0+600x90"},
			pod("keymigrate_s3_rate_limit", workerA, "200x90")),
		at: 60 * minute, want: []map[string]string{firing("KeymigrateS3Throttled")}},
	{name: "S3 throttles one request a second", about: []string{"KeymigrateS3Throttled"},
		series: busyFleet().with(
			inputSeries{fmt.Sprintf(`keymigrate_s3_throttled_total{operation="CopyObject",pod=%q}`, workerA), "0+60x90"},
			pod("keymigrate_s3_rate_limit", workerA, "200x90")),
		at: 60 * minute},

	{name: "Postgres down for every worker from 10m", about: []string{"KeymigrateDependencyDown"},
		series: busyFleet().with(
			inputSeries{fmt.Sprintf(`keymigrate_dependency_up{dependency="postgres",pod=%q}`, workerA), "1x10 0x80"},
			inputSeries{fmt.Sprintf(`keymigrate_dependency_up{dependency="postgres",pod=%q}`, workerB), "1x10 0x80"}),
		at: 30 * minute, want: []map[string]string{firing("KeymigrateDependencyDown", "dependency", "postgres")}},
	{name: "Postgres down for three minutes on one worker", about: []string{"KeymigrateDependencyDown"},
		series: busyFleet().with(inputSeries{fmt.Sprintf(`keymigrate_dependency_up{dependency="postgres",pod=%q}`, workerA), "1x10 0x3 1x77"}),
		at:     30 * minute},

	{name: "the sweeper enqueued 12 photos again at 20m", about: []string{"KeymigrateMessagesLost"},
		series: busyFleet().with(pod("keymigrate_photos_rescued_total", workerA, "0x20 12x70")), at: 25 * minute,
		want: []map[string]string{firing("KeymigrateMessagesLost")}},
	{name: "the sweeper's last rescue is 40 minutes old", about: []string{"KeymigrateMessagesLost"},
		series: busyFleet().with(pod("keymigrate_photos_rescued_total", workerA, "0x20 12x70")), at: 60 * minute},

	{name: "a worker restarts five times in five minutes", about: []string{"KeymigrateWorkerCrashLooping"},
		series: busyFleet().with(inputSeries{fmt.Sprintf(`kube_pod_container_status_restarts_total{namespace="keymigrate",pod=%q,container="worker"}`, workerB), "0x5 1+1x4 5x80"}),
		at:     20 * minute, want: []map[string]string{firing("KeymigrateWorkerCrashLooping", "namespace", "keymigrate", "pod", workerB, "container", "worker")}},
	{name: "a worker restarts once", about: []string{"KeymigrateWorkerCrashLooping"},
		series: busyFleet().with(inputSeries{fmt.Sprintf(`kube_pod_container_status_restarts_total{namespace="keymigrate",pod=%q,container="worker"}`, workerB), "0x10 1x80"}),
		at:     20 * minute},
	{name: "the producer restarts in place (restartPolicy OnFailure)", about: []string{"KeymigrateWorkerCrashLooping"},
		series: busyFleet().with(inputSeries{fmt.Sprintf(`kube_pod_container_status_restarts_total{namespace="keymigrate",pod=%q,container="producer"}`, producerPod), "0x5 1+1x4 5x80"}),
		at:     20 * minute},

	{name: "the producer Job reaches its backoff limit at 30m", about: []string{"KeymigrateJobFailed", "KeymigrateKubeStateMetricMissing"},
		// kube-state-metrics then reports one series per known reason, 1 for
		// the condition's, instead of the failed pod count.
		series: busyFleet().with(
			inputSeries{`kube_job_status_failed{namespace="keymigrate",job_name="keymigrate-producer",reason=""}`, "0x30"},
			inputSeries{`kube_job_status_failed{namespace="keymigrate",job_name="keymigrate-producer",reason="BackoffLimitExceeded"}`, "_x31 1x59"},
			inputSeries{`kube_job_status_failed{namespace="keymigrate",job_name="keymigrate-producer",reason="DeadlineExceeded"}`, "_x31 0x59"},
			inputSeries{`kube_job_status_failed{namespace="keymigrate",job_name="keymigrate-producer",reason="Evicted"}`, "_x31 0x59"}),
		at: 40 * minute, want: []map[string]string{firing("KeymigrateJobFailed", "namespace", "keymigrate", "job_name", "keymigrate-producer", "reason", "BackoffLimitExceeded")}},
	{name: "two pods of the Indexed verify Job failed", about: []string{"KeymigrateJobFailed"},
		series: busyFleet().with(inputSeries{`kube_job_status_failed{namespace="keymigrate",job_name="keymigrate-verify",reason=""}`, "0x10 2x80"}),
		at:     20 * minute, want: []map[string]string{firing("KeymigrateJobFailed", "namespace", "keymigrate", "job_name", "keymigrate-verify")}},
	{name: "another Job in the namespace failed", about: []string{"KeymigrateJobFailed"},
		series: busyFleet().with(inputSeries{`kube_job_status_failed{namespace="keymigrate",job_name="backup-ledger",reason=""}`, "3x90"}),
		at:     20 * minute},

	{name: "Prometheus does not scrape the workers", about: []string{"KeymigrateMetricMissing", "KeymigrateKubeStateMetricMissing", "KeymigrateQueueMetricMissing"},
		series: busyFleet().without("keymigrate_"), at: 30 * minute,
		// Without the workers' metrics no progress shows either.
		want: []map[string]string{firing("KeymigrateMetricMissing", "metric", "keymigrate_dependency_up"), firing("KeymigrateThroughputStalled")}},
	{name: "the image renamed keymigrate_paused", about: []string{"KeymigrateMetricMissing"},
		series:  busyFleet().renamed("keymigrate_paused", "keymigrate_fleet_paused"),
		renamed: []string{"keymigrate_fleet_paused"}, at: 30 * minute,
		want: []map[string]string{firing("KeymigrateMetricMissing", "metric", "keymigrate_paused")}},
	{name: "a worker paces its S3 requests but counts no throttle", about: []string{"KeymigrateMetricMissing"},
		series: busyFleet().with(pod("keymigrate_s3_rate_limit", workerA, "200x90")), at: 30 * minute,
		want: []map[string]string{firing("KeymigrateMetricMissing", "metric", "keymigrate_s3_throttled_total")}},

	{name: "the CloudWatch exporter is not running", about: []string{"KeymigrateQueueMetricMissing", "KeymigrateDLQGrowing"},
		series: busyFleet().without("aws_").with(
			inputSeries{fmt.Sprintf(`keymigrate_photos_processed_total{outcome="dead_lettered",reason="source_missing",pod=%q}`, workerA), "0x10 1x80"}),
		at: 45 * minute,
		want: []map[string]string{
			firing("KeymigrateQueueMetricMissing", "metric", "aws_sqs_approximate_number_of_messages_visible_average", "dimension_QueueName", "keymigrate"),
			firing("KeymigrateQueueMetricMissing", "metric", "aws_sqs_approximate_number_of_messages_visible_average", "dimension_QueueName", "keymigrate-dlq"),
		}},
	{name: "an idle DLQ has no CloudWatch series", about: []string{"KeymigrateQueueMetricMissing"},
		series: busyFleet().without(deadQueue), at: 60 * minute},

	{name: "kube-state-metrics is not installed", about: []string{"KeymigrateKubeStateMetricMissing", "KeymigrateMetricMissing"},
		series: busyFleet().without("kube_"), at: 30 * minute,
		want: []map[string]string{
			firing("KeymigrateKubeStateMetricMissing", "metric", "kube_pod_container_status_restarts_total", "namespace", "keymigrate", "container", "worker"),
			firing("KeymigrateKubeStateMetricMissing", "metric", "kube_pod_container_status_ready", "namespace", "keymigrate", "container", "worker"),
			firing("KeymigrateKubeStateMetricMissing", "metric", "kube_job_status_failed", "namespace", "keymigrate"),
		}},
}

// stalledAt30m stops every worker's settling at 30 minutes; the main queue
// stays at 5,000.
func stalledAt30m(s seriesSet) seriesSet {
	for _, w := range []string{workerA, workerB} {
		s = s.with(
			pod("keymigrate_photo_seconds_count", w, "0+100x30 3000x60"),
			inputSeries{fmt.Sprintf(`keymigrate_photos_processed_total{outcome="migrated",pod=%q}`, w), "0+99x30 2970x60"},
			inputSeries{fmt.Sprintf(`keymigrate_photos_processed_total{outcome="retry",reason="s3_unavailable",pod=%q}`, w), "0+1x30 30x60"},
		)
	}
	return s.with(inputSeries{mainQueue, "5000x90"})
}

// ruleAlerts returns the rules' alerts with their labels, by name.
func ruleAlerts(t *testing.T) map[string]map[string]string {
	t.Helper()
	_, rgs := readRules(t)
	out := map[string]map[string]string{}
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Labels
		}
	}
	return out
}

// seriesMetric is the metric name of a series in promtool notation.
func seriesMetric(series string) string {
	name, _, _ := strings.Cut(series, "{")
	return name
}

// TestAlerts evaluates every case and compares the alerts firing, with all
// their labels, with the case's.
func TestAlerts(t *testing.T) {
	t.Parallel()
	data, _ := readRules(t)
	rules := ruleAlerts(t)
	v := newVocabulary(t)
	for _, tc := range alertCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range tc.series {
				name := seriesMetric(s.Series)
				if slices.Contains(tc.renamed, name) {
					require.False(t, v.metrics[name] || v.external[name] != "", "%s is produced: not a rename", name)
					continue
				}
				require.True(t, v.metrics[name] || v.external[name] != "",
					"series %s: no code or exporter produces %s (renamed? a case about a rename lists it in renamed)", s.Series, name)
			}
			var want []string
			for _, w := range tc.want {
				l := map[string]string{}
				for k, val := range w {
					l[k] = val
				}
				ruleLabels, ok := rules[w["alertname"]]
				require.True(t, ok, "no alert %s in the rules", w["alertname"])
				for k, val := range ruleLabels {
					l[k] = val
				}
				want = append(want, labels.FromMap(l).String())
			}
			got := evalAlerts(t, data, tc.series, tc.at)[tc.at]
			var gotLabels []string
			for _, a := range got {
				gotLabels = append(gotLabels, a.String())
				for k, text := range a.Annotations {
					require.NotContains(t, text, "<no value>", "%s: annotation %s", a, k)
					require.NotEmpty(t, strings.TrimSpace(text), "%s: annotation %s", a, k)
				}
			}
			sort.Strings(want)
			require.Equal(t, want, gotLabels, "alerts firing at %v", tc.at)
		})
	}
}

// TestEveryAlertHasCases fails for an alert without a case in which it fires
// and one, about it, in which it stays quiet, and for a case about an alert
// the rules do not have.
func TestEveryAlertHasCases(t *testing.T) {
	t.Parallel()
	rules := ruleAlerts(t)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range alertCases {
		firingNow := map[string]bool{}
		for _, w := range tc.want {
			firingNow[w["alertname"]] = true
			fires[w["alertname"]] = true
		}
		for _, a := range tc.about {
			if a == everyAlert {
				for name := range rules {
					quiet[name] = quiet[name] || !firingNow[name]
				}
				continue
			}
			_, ok := rules[a]
			require.True(t, ok, "case %q is about %s, which the rules do not have", tc.name, a)
			quiet[a] = quiet[a] || !firingNow[a]
		}
	}
	var missing []string
	for _, name := range sortedNames(rules) {
		if !fires[name] {
			missing = append(missing, name+": no case in which it fires")
		}
		if !quiet[name] {
			missing = append(missing, name+": no case in which it stays quiet")
		}
	}
	require.Empty(t, missing)
}
