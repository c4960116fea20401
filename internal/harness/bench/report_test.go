package bench

import (
	"bufio"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

func TestRatioOfNothingIsNotANumber(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0.5, Ratio(1, 2))
	require.True(t, math.IsNaN(Ratio(1, 0)))
	require.Equal(t, "-", fmtRatio(Ratio(1, 0)))
	require.Equal(t, "0.25", fmtRatio(Ratio(1, 4)))
}

func TestPerObjectIsBusiestFirstWithTheTotalLast(t *testing.T) {
	t.Parallel()
	r := Result{Objects: 100, Requests: map[faultproxy.Op]int64{
		faultproxy.OpCopyObject: 100, faultproxy.OpHeadObject: 300, faultproxy.OpListObjectsV2: 30, faultproxy.OpGetObject: 0,
	}}
	require.Equal(t, []OpShare{{"HeadObject", 3}, {"CopyObject", 1}, {"ListObjectsV2", 0.3}, {"total", 4.3}}, r.PerObject())
	require.Nil(t, Result{Requests: r.Requests}.PerObject(), "no objects, no shares")
}

func TestTimelineCountsEachIntervalAndEndsWithTheRun(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	commits := []time.Time{at(100 * time.Millisecond), at(900 * time.Millisecond), at(time.Second), at(1500 * time.Millisecond), at(2500 * time.Millisecond)}
	samples := []Sample{
		{At: at(-time.Second), Throttled: 2},
		{At: at(800 * time.Millisecond), Throttled: 2},
		{At: at(1800 * time.Millisecond), Throttled: 7, RateLimit: 300},
		{At: at(2400 * time.Millisecond), Throttled: 8, RateLimit: 350},
	}
	p := Timeline(start, commits, samples, 10)
	require.Len(t, p, 3)
	// An interval includes its end: the commit at exactly 1s is the first's.
	require.Equal(t, []int64{3, 1, 1}, []int64{p[0].Objects, p[1].Objects, p[2].Objects})
	require.Equal(t, []float64{0, 5, 1}, []float64{p[0].Throttled, p[1].Throttled, p[2].Throttled}, "throttling since the run began, per interval")
	require.Equal(t, []float64{0, 300, 350}, []float64{p[0].RateLimit, p[1].RateLimit, p[2].RateLimit})
	require.Equal(t, 2500*time.Millisecond, p[2].End)
	require.Equal(t, 500*time.Millisecond, p[2].Width, "the last interval is as long as what is left of the run")
	require.Equal(t, 2.0, rate(p[2].Objects, p[2].Width))

	long := Timeline(start, []time.Time{at(95 * time.Second)}, nil, 10)
	require.Len(t, long, 10, "at most maxRows rows, of whole seconds")
	require.Equal(t, 10*time.Second, long[0].Width)
	require.Nil(t, Timeline(start, nil, samples, 10))

	ragged := Timeline(start, []time.Time{at(time.Second), at(3*time.Second + 4*time.Millisecond)}, nil, 10)
	require.Len(t, ragged, 3, "4 ms past the third second is no interval of its own")
	require.Equal(t, 1004*time.Millisecond, ragged[2].Width)
	require.Equal(t, int64(1), ragged[2].Objects)
}

func TestParseMetricsSumsTheSeriesOfEachMetric(t *testing.T) {
	t.Parallel()
	text := `# HELP keymigrate_s3_throttled_total S3 responses asking to slow down.
# TYPE keymigrate_s3_throttled_total counter
keymigrate_s3_throttled_total{operation="CopyObject"} 3
keymigrate_s3_throttled_total{operation="HeadObject",note="a } in a label"} 4 1700000000000
keymigrate_s3_rate_limit 250.5
broken_line{no_end 1
`
	m, err := parseMetrics(bufio.NewScanner(strings.NewReader(text)))
	require.NoError(t, err)
	require.Equal(t, 7.0, m[metricThrottled])
	require.Equal(t, 250.5, m[metricRateLimit])
	require.NotContains(t, m, "broken_line")
}

func TestParseProcStatCPU(t *testing.T) {
	t.Parallel()
	// Fields 14 and 15 (utime 250, stime 130 ticks), with a command name that
	// holds a space and a parenthesis.
	stat := "4242 (vgw (posix) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 12 0 100 1000000 500 18446744073709551615"
	require.Equal(t, 3800*time.Millisecond, parseProcStatCPU(stat))
	require.Zero(t, parseProcStatCPU("garbage"))
	require.Zero(t, procCPU(0))
}

func TestShellQuoteSurvivesQuotes(t *testing.T) {
	t.Parallel()
	require.Equal(t, `'s3://b/uploaded/a.jpg'`, shellQuote("s3://b/uploaded/a.jpg"))
	require.Equal(t, `'s3://b/it'\''s.jpg'`, shellQuote("s3://b/it's.jpg"))
}

func TestBenchReportPrintsRatesRatiosAndRequests(t *testing.T) {
	t.Parallel()
	reqs := func(head, cp, list int64) map[faultproxy.Op]int64 {
		return map[faultproxy.Op]int64{faultproxy.OpHeadObject: head, faultproxy.OpCopyObject: cp, faultproxy.OpListObjectsV2: list}
	}
	rep := BenchReport{
		Photos: 100, Seed: 7, Workers: 2, Concurrency: 16, S5cmd: "s5cmd v2.3.0", CPUs: 2,
		Fleet: Result{Name: "fleet", Photos: 100, Objects: 300, Elapsed: 2 * time.Second, Requests: reqs(1000, 300, 100),
			Procs: Procs{CPU: 600 * time.Millisecond, PeakRSS: 40 << 20, Wall: 5 * time.Second}},
		NoRecheck: Result{Name: "fleet --recheck-sources=false", Photos: 100, Objects: 300, Elapsed: 1500 * time.Millisecond, Requests: reqs(700, 300, 100), Unfinished: 2},
		Raw:       Result{Name: "raw CopyObject loop", Objects: 300, Elapsed: 500 * time.Millisecond, Requests: reqs(0, 300, 0)},
		Peer:      Result{Name: "s5cmd v2.3.0", Objects: 300, Elapsed: time.Second, Requests: reqs(0, 300, 0)},
	}
	var b strings.Builder
	rep.Write(&b)
	out := b.String()
	require.Contains(t, out, "raw loop and s5cmd v2.3.0 at 32 copies at once")
	require.Regexp(t, `fleet\s+100\s+300\s+2\.00\s+150\s+0\.25\s+0\.6\s+2\.00\s+40 MiB\s+-`, out)
	require.Regexp(t, `raw CopyObject loop\s+-\s+300\s+0\.50\s+600\s+1\.00`, out)
	require.Contains(t, out, "fleet / raw:    0.25")
	require.Contains(t, out, "fleet / s5cmd:  0.50")
	require.Contains(t, out, "fleet --recheck-sources=false / raw: 0.33, / s5cmd: 0.67")
	require.Contains(t, out, "fleet: 50 photos/s, 3.00 objects and 14.0 S3 requests per photo; processes ran 5.0s")
	require.Contains(t, out, "WARNING: fleet --recheck-sources=false left 2 photos")
	require.Regexp(t, `HeadObject\s+3\.33\s+2\.33\s+-\s+-`, out)
	require.Regexp(t, `total\s+4\.67\s+3\.67\s+1\.00\s+1\.00`, out)
}

func TestScaleReportPrintsTheRatioPerStep(t *testing.T) {
	t.Parallel()
	run := func(photos int64, secs float64) Result {
		return Result{Photos: photos, Objects: 3 * photos, Elapsed: time.Duration(secs * float64(time.Second)), Procs: Procs{PeakRSS: 50 << 20}}
	}
	rep := ScaleReport{Photos: 1000, Latency: 30 * time.Millisecond, CPUs: 2,
		Concurrency: []int{16, 64, 256}, ByConcurrency: []Result{run(1000, 10), run(1000, 4), run(1000, 2)},
		Workers: []int{1, 2, 4}, FleetConcurrency: 64, ByWorkers: []Result{run(1000, 4), run(1000, 2.5), run(1000, 2)}}
	var b strings.Builder
	rep.Write(&b)
	out := b.String()
	require.Contains(t, out, "30ms added to every S3 request")
	require.Regexp(t, `(?m)^16\s+100\s+300\s+-\s+-\s+10\.0`, out)
	require.Regexp(t, `(?m)^64\s+250\s+750\s+2\.50\s+4x\s+4\.0`, out)
	require.Regexp(t, `(?m)^256\s+500\s+1500\s+2\.00\s+4x`, out)
	require.Regexp(t, `(?m)^2\s+400\s+1200\s+1\.60\s+2\s+2\.5`, out)
	require.Regexp(t, `(?m)^4\s+500\s+1500\s+2\.00\s+4\s+2\.0\s+-\s+-\s+50 MiB`, out)
}

// The p50 photo latency divided by the added latency is the round trips a
// photo takes (issue 20's "2 plus the swap"); with no added latency the
// ratio is not printed, the run being the overhead to subtract.
func TestScaleReportPrintsRoundTripsPerPhoto(t *testing.T) {
	t.Parallel()
	res := Result{Name: "1 worker x 4", Photos: 100, Elapsed: time.Second,
		Latency: ledger.Latency{Photos: 100, P50: 0.069, P90: 0.102}}
	rep := ScaleReport{Photos: 100, Latency: 30 * time.Millisecond, CPUs: 2, Enforce: true,
		Concurrency: []int{4}, ByConcurrency: []Result{res}}
	var b strings.Builder
	rep.Write(&b)
	out := b.String()
	require.Contains(t, out, "conditional copies enforced")
	require.Regexp(t, `(?m)^1 worker x 4\s+100\s+69\.0\s+102\.0\s+2\.30\s+3\.40`, out)

	rep.Latency, rep.Enforce = 0, false
	b.Reset()
	rep.Write(&b)
	require.Contains(t, b.String(), "not enforced")
	require.Regexp(t, `(?m)^1 worker x 4\s+100\s+69\.0\s+102\.0\s+-\s+-`, b.String())
}
