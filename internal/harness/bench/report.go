package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// Result is one measured run.
type Result struct {
	Name string
	// Latency is each photo's start to its swap, from the ledger (the
	// fleet only).
	Latency ledger.Latency
	// Photos is the photos the fleet finished (migrated or archived); zero
	// for the peers, which copy objects, not photos.
	Photos int64
	// Objects is what was copied: for the fleet, objects moved and verified.
	Objects int64
	// Elapsed is the time the rates are over. For the fleet it runs from the
	// first photo a worker started to the last one it finished, read from the
	// ledger, so process start-up and the final empty polls of --drain do not
	// count; for the peers it is their whole run.
	Elapsed time.Duration
	// Procs is the run's own processes (zero for the in-process raw loop).
	Procs Procs
	// ServerCPU is the S3 server's CPU time during the run (0: not measured).
	ServerCPU time.Duration
	// SelfCPU is the benchmark process's CPU time during the run: the
	// counting proxy's, and for the raw loop the loop's too.
	SelfCPU time.Duration
	// Requests are the S3 requests of the run, by operation, as the counting
	// proxy saw them.
	Requests map[faultproxy.Op]int64
	// Unfinished is the photos the fleet left neither migrated nor archived
	// (dead-lettered, say): a benchmark with any is not a valid measurement.
	Unfinished int64
	// Timeline is the fleet's rate over time.
	Timeline []Point

	// Faults are what the proxy injected during the run, by kind.
	Faults map[faultproxy.Fault]int64
	// Began is when the fleet's processes were started (and the proxy's
	// clock restarted); Samples are the workers' metrics and the proxy's
	// counters every second from then, the first taken at Began.
	Began   time.Time
	Samples []Sample
	// Commits are when each moved object was committed (the ledger).
	Commits []time.Time
	// Retries, HandedBack and DeadLettered are the ledger's: attempts on
	// photos beyond their first, failures recorded on handing a photo back
	// to the queue, photos left failed.
	Retries, HandedBack, DeadLettered int64
}

// ObjectsPerSec is the run's object rate.
func (r Result) ObjectsPerSec() float64 { return rate(r.Objects, r.Elapsed) }

// PhotosPerSec is the fleet's photo rate.
func (r Result) PhotosPerSec() float64 { return rate(r.Photos, r.Elapsed) }

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Ratio is a/b, NaN when b is zero (printed as "-").
func Ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

func fmtSeconds(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", d.Seconds())
}

func fmtBytes(n int64) string {
	if n <= 0 {
		return "-"
	}
	return humanize.IBytes(uint64(n))
}

// cpuPer is CPU milliseconds per item.
func cpuPer(cpu time.Duration, n int64) string {
	if cpu <= 0 || n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(cpu.Microseconds())/1000/float64(n))
}

// PerObject is each operation's requests per object copied, busiest first,
// with "total" last.
func (r Result) PerObject() []OpShare {
	return shares(r.Requests, r.Objects)
}

// OpShare is one operation's requests per unit of work.
type OpShare struct {
	Op  string
	Per float64
}

func shares(reqs map[faultproxy.Op]int64, n int64) []OpShare {
	if n <= 0 {
		return nil
	}
	var out []OpShare
	var total int64
	for op, c := range reqs {
		if c == 0 {
			continue
		}
		out = append(out, OpShare{string(op), float64(c) / float64(n)})
		total += c
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Per > out[j].Per || (out[i].Per == out[j].Per && out[i].Op < out[j].Op)
	})
	return append(out, OpShare{"total", float64(total) / float64(n)})
}

// BenchReport is what `kmbench bench` measured.
type BenchReport struct {
	Photos      int
	Seed        uint64
	Workers     int
	Concurrency int
	S5cmd       string // the peer's version
	CPUs        int
	// Fleet is the fleet at its defaults; NoRecheck the fleet with
	// --recheck-sources=false (on a second backlog); Raw and Peer the plain
	// CopyObject loop and s5cmd over the objects Fleet moved.
	Fleet, NoRecheck, Raw, Peer Result
}

// Write prints the report: the rates and their ratios, where the CPU went,
// the S3 requests per object by operation, and the fleet's rate over time.
func (b BenchReport) Write(w io.Writer) {
	total := b.Workers * b.Concurrency
	fmt.Fprintf(w, "\nbench: %d seeded photos (--seed %d), %d CPUs; fleet of %d workers x --concurrency %d;\n", b.Photos, b.Seed, b.CPUs, b.Workers, b.Concurrency)
	fmt.Fprintf(w, "raw loop and %s at %d copies at once; every S3 request through the counting proxy\n\n", b.S5cmd, total)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tphotos\tobjects\tseconds\tobjects/s\tvs raw\tCPU s\tCPU ms/object\tpeak RSS\tS3 server CPU s\tkmbench CPU s\t")
	raw := b.Raw.ObjectsPerSec()
	for _, r := range []Result{b.Fleet, b.NoRecheck, b.Raw, b.Peer} {
		photos := "-"
		if r.Photos > 0 {
			photos = fmt.Sprint(r.Photos)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, photos, r.Objects, r.Elapsed.Seconds(), r.ObjectsPerSec(),
			fmtRatio(Ratio(r.ObjectsPerSec(), raw)), fmtSeconds(r.Procs.CPU), cpuPer(r.Procs.CPU, r.Objects), fmtBytes(r.Procs.PeakRSS), fmtSeconds(r.ServerCPU), fmtSeconds(r.SelfCPU))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nfleet / raw:    %s  (verified moves/s ÷ raw copies/s; target ≥ 0.50)\n", fmtRatio(Ratio(b.Fleet.ObjectsPerSec(), raw)))
	fmt.Fprintf(w, "fleet / s5cmd:  %s\n", fmtRatio(Ratio(b.Fleet.ObjectsPerSec(), b.Peer.ObjectsPerSec())))
	fmt.Fprintf(w, "fleet --recheck-sources=false / raw: %s, / s5cmd: %s\n",
		fmtRatio(Ratio(b.NoRecheck.ObjectsPerSec(), raw)), fmtRatio(Ratio(b.NoRecheck.ObjectsPerSec(), b.Peer.ObjectsPerSec())))
	for _, r := range []Result{b.Fleet, b.NoRecheck} {
		var reqs int64
		for _, n := range r.Requests {
			reqs += n
		}
		fmt.Fprintf(w, "%s: %.0f photos/s, %.2f objects and %.1f S3 requests per photo; processes ran %.1fs\n",
			r.Name, r.PhotosPerSec(), Ratio(float64(r.Objects), float64(r.Photos)), Ratio(float64(reqs), float64(r.Photos)), r.Procs.Wall.Seconds())
		if r.Unfinished > 0 {
			fmt.Fprintf(w, "WARNING: %s left %d photos neither migrated nor archived: not a valid measurement (see the worker logs)\n", r.Name, r.Unfinished)
		}
	}

	fmt.Fprintf(w, "\nS3 requests per object copied, by operation (the fleet's include a LIST and a HEAD per photo):\n\n")
	writeShares(w, []Result{b.Fleet, b.NoRecheck, b.Raw, b.Peer})
	if len(b.Fleet.Timeline) > 0 {
		fmt.Fprintf(w, "\n%s over time (objects: ledger; S3 throttling: the workers' /metrics every second):\n\n", b.Fleet.Name)
		writeTimeline(w, b.Fleet.Timeline)
	}
}

// writeShares prints one column of requests per object for each run.
func writeShares(w io.Writer, runs []Result) {
	per := make([]map[string]float64, len(runs))
	seen := map[string]float64{}
	for i, r := range runs {
		per[i] = map[string]float64{}
		for _, s := range r.PerObject() {
			per[i][s.Op] = s.Per
			if s.Op != "total" {
				seen[s.Op] = max(seen[s.Op], s.Per)
			}
		}
	}
	ops := make([]string, 0, len(seen))
	for op := range seen {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		return seen[ops[i]] > seen[ops[j]] || (seen[ops[i]] == seen[ops[j]] && ops[i] < ops[j])
	})
	ops = append(ops, "total")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"operation"}
	for _, r := range runs {
		head = append(head, r.Name)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, op := range ops {
		row := []string{op}
		for i := range runs {
			if v, ok := per[i][op]; ok {
				row = append(row, fmt.Sprintf("%.2f", v))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	_ = tw.Flush()
}

// Point is one interval of a fleet's run.
type Point struct {
	End       time.Duration // since the first photo started
	Width     time.Duration
	Objects   int64   // objects committed in the interval
	Throttled float64 // S3 throttling responses in the interval
	RateLimit float64 // the workers' summed S3 rate limit at its end (0: none)
}

// Timeline cuts the run from start into at most maxRows intervals of whole
// seconds (the last one up to half an interval longer or shorter), counting the objects committed in each (from their commit times)
// and, from the workers' samples, the throttling responses and the S3 rate
// limit.
func Timeline(start time.Time, commits []time.Time, samples []Sample, maxRows int) []Point {
	var end time.Time
	for _, c := range commits {
		if c.After(end) {
			end = c
		}
	}
	if end.IsZero() || !end.After(start) || maxRows <= 0 {
		return nil
	}
	span := end.Sub(start)
	width := time.Duration(math.Ceil(span.Seconds()/float64(maxRows))) * time.Second
	width = max(width, time.Second)
	// A remainder shorter than half an interval joins the last one rather
	// than make an interval of a few milliseconds with a meaningless rate.
	n := int(span / width)
	if n == 0 || span%width >= width/2 {
		n++
	}
	points := make([]Point, n)
	for i := range points {
		points[i].End = time.Duration(i+1) * width
		points[i].Width = width
	}
	// The last interval ends with the run, so its rate is over what it holds.
	points[n-1].End = span
	points[n-1].Width = span - time.Duration(n-1)*width
	index := func(t time.Time) int {
		i := int(t.Sub(start) / width)
		if t.Sub(start)%width == 0 && i > 0 {
			i-- // an interval includes its end
		}
		return min(max(i, 0), n-1)
	}
	for _, c := range commits {
		points[index(c)].Objects++
	}
	var prev float64
	for _, s := range samples {
		if s.At.Before(start) {
			prev = s.Throttled
			continue
		}
		i := index(s.At)
		points[i].Throttled += s.Throttled - prev
		points[i].RateLimit = s.RateLimit
		prev = s.Throttled
	}
	return points
}

func writeTimeline(w io.Writer, points []Point) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "until (s)\tobjects/s\tS3 throttled\tS3 rate limit (req/s)\t")
	for _, p := range points {
		limit := "none"
		if p.RateLimit > 0 {
			limit = fmt.Sprintf("%.0f", p.RateLimit)
		}
		fmt.Fprintf(tw, "%.1f\t%.0f\t%.0f\t%s\t\n", p.End.Seconds(), rate(p.Objects, p.Width), p.Throttled, limit)
	}
	_ = tw.Flush()
}

// ScaleReport is what `kmbench scale-latency` measured.
type ScaleReport struct {
	Photos  int
	Latency time.Duration
	CPUs    int
	// ByConcurrency are one worker's runs at each --concurrency, in order.
	ByConcurrency []Result
	Concurrency   []int
	// ByWorkers are runs of 1, 2, 4… workers at FleetConcurrency each.
	ByWorkers        []Result
	Workers          []int
	FleetConcurrency int
	// Enforce: conditional copies were enforced in front of the server.
	Enforce bool
}

// Write prints the two tables.
func (s ScaleReport) Write(w io.Writer) {
	fmt.Fprintf(w, "\nscale-latency: %s added to every S3 request by the fault proxy; %d CPUs;\n%d seeded photos per run, each on a fresh backlog\n", s.Latency, s.CPUs, s.Photos)
	if s.Enforce {
		fmt.Fprintf(w, "conditional copies enforced in front of the server, as S3 does\n")
	} else {
		fmt.Fprintf(w, "conditional copies as the server does them (versitygw: not enforced)\n")
	}
	s.writeRoundTrips(w)
	if len(s.ByConcurrency) > 0 {
		fmt.Fprintf(w, "\none worker:\n\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "--concurrency\tphotos/s\tobjects/s\tvs previous\tper step of\tseconds\tCPU s\tCPU ms/photo\tpeak RSS\t")
		for i, r := range s.ByConcurrency {
			step, vs := "-", "-"
			if i > 0 {
				vs = fmtRatio(Ratio(r.PhotosPerSec(), s.ByConcurrency[i-1].PhotosPerSec()))
				step = fmt.Sprintf("%sx", fmtFactor(Ratio(float64(s.Concurrency[i]), float64(s.Concurrency[i-1]))))
			}
			fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%s\t%s\t%.1f\t%s\t%s\t%s\t\n", s.Concurrency[i], r.PhotosPerSec(), r.ObjectsPerSec(), vs, step,
				r.Elapsed.Seconds(), fmtSeconds(r.Procs.CPU), cpuPer(r.Procs.CPU, r.Photos), fmtBytes(r.Procs.PeakRSS))
		}
		_ = tw.Flush()
	}
	if len(s.ByWorkers) > 0 {
		fmt.Fprintf(w, "\nworker processes at --concurrency %d each:\n\n", s.FleetConcurrency)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "workers\tphotos/s\tobjects/s\tvs 1st row\tideal\tseconds\tCPU s\tCPU ms/photo\tpeak RSS (largest)\t")
		for i, r := range s.ByWorkers {
			fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%s\t%s\t%.1f\t%s\t%s\t%s\t\n", s.Workers[i], r.PhotosPerSec(), r.ObjectsPerSec(),
				fmtRatio(Ratio(r.PhotosPerSec(), s.ByWorkers[0].PhotosPerSec())), fmtFactor(Ratio(float64(s.Workers[i]), float64(s.Workers[0]))),
				r.Elapsed.Seconds(), fmtSeconds(r.Procs.CPU), cpuPer(r.Procs.CPU, r.Photos), fmtBytes(r.Procs.PeakRSS))
		}
		_ = tw.Flush()
	}
	for _, r := range append(append([]Result{}, s.ByConcurrency...), s.ByWorkers...) {
		if r.Unfinished > 0 {
			fmt.Fprintf(w, "WARNING: %s left %d photos neither migrated nor archived: not a valid measurement (see the worker logs)\n", r.Name, r.Unfinished)
		}
	}
}

func fmtFactor(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
}

// writeRoundTrips prints each run's per-photo latency (a worker's start on a
// photo to its swap, from the ledger) and its p50 in round trips of the added
// latency: the S3 requests on a photo's critical path, plus the swap's
// Postgres part (small on a local stack).
func (s ScaleReport) writeRoundTrips(w io.Writer) {
	runs := append(append([]Result{}, s.ByConcurrency...), s.ByWorkers...)
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nper photo, start to swap (ledger), in round trips of %s:\n\n", s.Latency)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tphotos\tp50 ms\tp90 ms\tp50 / latency\tp90 / latency\t")
	for _, r := range runs {
		// With no added latency the ratio is meaningless; that run is the
		// local overhead to subtract (docs/performance.md).
		p50, p90 := "-", "-"
		if lat := s.Latency.Seconds(); lat > 0 {
			p50, p90 = fmt.Sprintf("%.2f", r.Latency.P50/lat), fmt.Sprintf("%.2f", r.Latency.P90/lat)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%s\t%s\t\n", r.Name, r.Latency.Photos, r.Latency.P50*1000, r.Latency.P90*1000, p50, p90)
	}
	_ = tw.Flush()
}
