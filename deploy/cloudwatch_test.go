package deploy

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/keymigrate/keymigrate/deploy/iam"
)

// exporterName is the name of every object of the CloudWatch exporter
// (deploy/k8s/base/cloudwatch-exporter.yaml).
const exporterName = "keymigrate-cloudwatch-exporter"

// yaceConfig is the part of YACE's configuration file (v0.67.0,
// pkg/config/scrapeconf.go) the manifests use; decoded strictly, so a field
// YACE does not know (and would ignore with a log line) fails.
type yaceConfig struct {
	APIVersion string `yaml:"apiVersion"`
	StsRegion  string `yaml:"sts-region"`
	Static     []struct {
		Name       string   `yaml:"name"`
		Namespace  string   `yaml:"namespace"`
		Regions    []string `yaml:"regions"`
		Dimensions []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"dimensions"`
		Metrics []struct {
			Name       string   `yaml:"name"`
			Statistics []string `yaml:"statistics"`
			Period     int      `yaml:"period"`
			Length     int      `yaml:"length"`
		} `yaml:"metrics"`
	} `yaml:"static"`
}

// yacePromString is YACE's PromString (pkg/promutil/prometheus.go, v0.67.0):
// CamelCase to snake_case, separators to underscores.
func yacePromString(text string) string {
	var b strings.Builder
	var prev rune
	for _, c := range text {
		switch {
		case strings.ContainsRune(" ,\t/\\.-:=@<>()“", c):
			b.WriteRune('_')
		case c == '%':
			b.WriteString("_percent")
		default:
			if unicode.IsUpper(c) && (unicode.IsLower(prev) || unicode.IsDigit(prev)) {
				b.WriteRune('_')
			}
			b.WriteRune(unicode.ToLower(c))
		}
		prev = c
	}
	return b.String()
}

// yaceMetricName is YACE's BuildMetricName (pkg/promutil/migrate.go,
// v0.67.0): AWS/SQS, ApproximateNumberOfMessagesVisible, Average is
// aws_sqs_approximate_number_of_messages_visible_average.
func yaceMetricName(namespace, metric, statistic string) string {
	ns := yacePromString(strings.ToLower(strings.TrimPrefix(namespace, "/")))
	name := ns
	if !strings.HasPrefix(ns, "aws") {
		name = "aws_" + ns
	}
	m := yacePromString(metric)
	skip := 0
	for _, part := range strings.Split(ns, "_") {
		if strings.HasPrefix(m[skip:], part) {
			skip = len(part)
		}
	}
	return name + "_" + strings.TrimPrefix(m[skip:], "_") + "_" + yacePromString(statistic)
}

// cloudWatchExporter is the exporter as the base renders it: its
// configuration and the series it serves, by metric name, with the queue
// names (dimension_QueueName) each has.
type cloudWatchExporter struct {
	m      *manifests
	config yaceConfig
	series map[string][]string
}

func readCloudWatchExporter(t *testing.T) cloudWatchExporter {
	t.Helper()
	objs, err := kustomizeBuild(filepath.FromSlash("k8s/base"))
	require.NoError(t, err)
	e := cloudWatchExporter{m: newManifests(objs, externalSecrets), series: map[string][]string{}}
	cm := e.m.configMaps[exporterName]
	require.NotNil(t, cm, "ConfigMap %s", exporterName)
	dec := yaml.NewDecoder(strings.NewReader(cm.Data["config.yml"]))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&e.config), "ConfigMap %s: config.yml", exporterName)
	for _, job := range e.config.Static {
		for _, d := range job.Dimensions {
			if d.Name != "QueueName" {
				continue
			}
			for _, mc := range job.Metrics {
				for _, st := range mc.Statistics {
					name := yaceMetricName(job.Namespace, mc.Name, st)
					e.series[name] = append(e.series[name], d.Value)
				}
			}
		}
	}
	return e
}

// metricNames lists the names the exporter serves, sorted.
func (e cloudWatchExporter) metricNames() []string {
	var out []string
	for n := range e.series {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// staticJobActions are the IAM actions YACE's static jobs call
// (pkg/job/static.go and scrape.go, v0.67.0): GetMetricStatistics, and the
// account's alias for the account_alias label (without it YACE logs a warning
// at every scrape). sts:GetCallerIdentity needs no permission. Discovery jobs
// would call ListMetrics, GetMetricData and tag:GetResources; yaceConfig
// refuses them.
var staticJobActions = []string{"cloudwatch:GetMetricStatistics", "iam:ListAccountAliases"}

// TestCloudWatchExporter checks the exporter against the rest of the
// deployment: it reads the queues of keymigrate-config in its region, serves
// the three queue metrics for both, reads the configuration where the
// ConfigMap is mounted, and its IAM policy grants what its jobs call and
// nothing more.
func TestCloudWatchExporter(t *testing.T) {
	t.Parallel()
	e := readCloudWatchExporter(t)
	queues := productionQueues(t)
	cfg, _ := e.m.source("ConfigMap", "keymigrate-config")
	region := cfg["AWS_REGION"]

	require.Equal(t, "v1alpha1", e.config.APIVersion)
	require.Equal(t, region, e.config.StsRegion, "sts-region is the fleet's region")
	var read []string
	for _, job := range e.config.Static {
		require.Equal(t, "AWS/SQS", job.Namespace, job.Name)
		require.Equal(t, []string{region}, job.Regions, "%s: the queues are in AWS_REGION of keymigrate-config", job.Name)
		require.Len(t, job.Dimensions, 1, job.Name)
		read = append(read, job.Dimensions[0].Value)
		for _, mc := range job.Metrics {
			require.Positive(t, mc.Period, "%s/%s", job.Name, mc.Name)
			require.GreaterOrEqual(t, mc.Length, mc.Period, "%s/%s: length covers a period", job.Name, mc.Name)
		}
	}
	require.ElementsMatch(t, queues, read, "one static job per queue of keymigrate-config")
	for _, m := range []string{
		"aws_sqs_approximate_number_of_messages_visible_average",
		"aws_sqs_approximate_number_of_messages_not_visible_average",
		"aws_sqs_approximate_age_of_oldest_message_maximum",
	} {
		require.ElementsMatch(t, queues, e.series[m], "%s for both queues", m)
	}

	// The Deployment reads the file the ConfigMap provides.
	d := e.m.deployments[exporterName]
	require.NotNil(t, d)
	pod := d.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	var configFile string
	for _, a := range argv(&c) {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			configFile = v
		}
	}
	require.NotEmpty(t, configFile, "--config.file")
	mounted := false
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == exporterName && vm.MountPath == path.Dir(configFile) {
				mounted = true
			}
		}
	}
	require.True(t, mounted, "ConfigMap %s is mounted at %s", exporterName, path.Dir(configFile))
	sa := e.m.serviceAccounts[pod.ServiceAccountName]
	require.NotNil(t, sa, "service account %s", pod.ServiceAccountName)
	require.NotEmpty(t, sa.Annotations["eks.amazonaws.com/role-arn"], "the exporter has its own role")
	require.NotEqual(t, "keymigrate", pod.ServiceAccountName, "not the workers' role")
	require.NotNil(t, e.m.serviceMonitors[exporterName], "Prometheus scrapes it")

	// The policy grants exactly what the job kinds in use call.
	var need []string
	if len(e.config.Static) > 0 {
		need = append(need, staticJobActions...)
	}
	raw, err := fs.ReadFile(iam.Files, "cloudwatch-exporter-role.json")
	require.NoError(t, err)
	var p struct {
		Statement []struct {
			Effect string
			Action []string
		}
	}
	require.NoError(t, json.NewDecoder(bytes.NewReader(raw)).Decode(&p))
	var granted []string
	for _, s := range p.Statement {
		if s.Effect == "Allow" {
			granted = append(granted, s.Action...)
		}
	}
	slices.Sort(granted)
	slices.Sort(need)
	require.Equal(t, need, granted, "deploy/iam/cloudwatch-exporter-role.json grants what the exporter's jobs call")
}

// TestYACEMetricNames pins the name derivation on names YACE documents.
func TestYACEMetricNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ ns, metric, stat, want string }{
		{"AWS/SQS", "ApproximateNumberOfMessagesVisible", "Average", "aws_sqs_approximate_number_of_messages_visible_average"},
		{"AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", "aws_sqs_approximate_age_of_oldest_message_maximum"},
		{"AWS/EC2", "CPUUtilization", "Average", "aws_ec2_cpuutilization_average"},
		{"Glue", "glue.driver.aggregate.bytesRead", "Sum", "aws_glue_driver_aggregate_bytes_read_sum"},
	} {
		require.Equal(t, tc.want, yaceMetricName(tc.ns, tc.metric, tc.stat))
	}
}
