package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
)

// The scenarios of Throttle, in the order they run.
const (
	ScenarioNone     = "none"     // (a) no faults
	ScenarioSlowDown = "slowdown" // (b) a share of requests answered 503 SlowDown
	ScenarioInternal = "internal" // (c) the same share answered 500 InternalError
	ScenarioLimit    = "limit"    // (d) a hard limit for a window, then lifted
)

// Scenarios lists them all.
var Scenarios = []string{ScenarioNone, ScenarioSlowDown, ScenarioInternal, ScenarioLimit}

// ThrottleSpec is a throttling measurement.
type ThrottleSpec struct {
	Fleet FleetSpec
	// Scenarios to run (Scenarios); each gets a fresh backlog.
	Scenarios []string
	// FaultRate is the share of requests answered SlowDown in (b) and 500 in (c).
	FaultRate float64
	// Limit is N, the hard limit in requests/s of (d); 0: half the requests
	// per second the proxy let through in (a).
	Limit float64
	// Lead is how long after the workers start the limit begins; Window how
	// long it holds.
	Lead, Window time.Duration
	// LimitPhotos is the backlog of (d); 0: sized from (a)'s rate so that the
	// fleet runs about Tail past the window.
	LimitPhotos int
	Tail        time.Duration
}

// ThrottleRun is one scenario's run.
type ThrottleRun struct {
	Label string
	Result
	// DLQ is the dead-letter queue's depth after the run (-1: not read).
	DLQ int64
}

// LimitRun is (d): the run, how N was chosen, the fit and the table.
type LimitRun struct {
	ThrottleRun
	Photos  int
	NSource string // how N was chosen
	// RefSource says where the fit's reference (the unthrottled rate) came
	// from: the run's own seconds before the limit, or (a).
	RefSource string
	Fit       LimitFit
	Rows      []Row
}

// ThrottleReport is what `kmbench throttle` measured.
type ThrottleReport struct {
	Photos, Workers, Concurrency, CPUs int
	Seed                               uint64
	FaultRate                          float64
	Runs                               []ThrottleRun // (a), (b), (c), those run
	Limit                              *LimitRun     // (d), if run
}

// Throttle runs the fleet through the proxy in each of spec's scenarios, on
// a fresh backlog each, and writes the report to out.
func Throttle(ctx context.Context, cfg Config, spec ThrottleSpec, out io.Writer) error {
	for _, s := range spec.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return fmt.Errorf("throttle: unknown scenario %q (want some of %s)", s, strings.Join(Scenarios, ","))
		}
	}
	has := func(s string) bool { return slices.Contains(spec.Scenarios, s) }
	if has(ScenarioLimit) && spec.Limit <= 0 && !has(ScenarioNone) {
		return errors.New("throttle: the limit scenario needs --limit N, or the unthrottled scenario to choose N from")
	}
	if has(ScenarioLimit) && spec.LimitPhotos <= 0 && !has(ScenarioNone) {
		return errors.New("throttle: the limit scenario needs --limit-photos, or the unthrottled scenario to size its backlog from")
	}
	if spec.FaultRate <= 0 || spec.FaultRate >= 1 {
		return fmt.Errorf("throttle: fault rate %v: want a share between 0 and 1", spec.FaultRate)
	}
	if spec.Window <= 0 {
		return errors.New("throttle: the limit's window must be positive")
	}
	r, err := newRunner(ctx, cfg, faultproxy.Plan{}, spec.Fleet.Workers*spec.Fleet.Concurrency)
	if err != nil {
		return err
	}
	defer r.close()
	rep := ThrottleReport{Photos: cfg.Photos, Seed: cfg.Seed, Workers: spec.Fleet.Workers, Concurrency: spec.Fleet.Concurrency,
		CPUs: runtime.NumCPU(), FaultRate: spec.FaultRate}

	run := func(label string, plan faultproxy.Plan, photos int) (ThrottleRun, error) {
		b, err := r.backlogOf(ctx, photos)
		if err != nil {
			return ThrottleRun{}, err
		}
		defer r.drop(ctx, b)
		r.proxy.SetPlan(plan)
		defer r.proxy.SetPlan(faultproxy.Plan{})
		res, err := r.fleet(ctx, b, label, spec.Fleet)
		tr := ThrottleRun{Label: label, Result: res, DLQ: -1}
		if err != nil {
			return tr, err
		}
		if tr.DLQ, err = b.DLQDepth(ctx); err != nil {
			r.logf("%s: %v", label, err)
			tr.DLQ = -1
		}
		return tr, nil
	}
	pct := fmt.Sprintf("%g%%", spec.FaultRate*100)
	for _, sc := range []struct {
		name, label string
		plan        faultproxy.Plan
	}{
		{ScenarioNone, "(a) no faults", faultproxy.Plan{}},
		{ScenarioSlowDown, "(b) " + pct + " SlowDown", faultproxy.Plan{Base: faultproxy.Rates{SlowDown: spec.FaultRate}}},
		{ScenarioInternal, "(c) " + pct + " InternalError", faultproxy.Plan{Base: faultproxy.Rates{InternalError: spec.FaultRate}}},
	} {
		if !has(sc.name) {
			continue
		}
		tr, err := run(sc.label, sc.plan, cfg.Photos)
		if err != nil {
			return err
		}
		rep.Runs = append(rep.Runs, tr)
	}
	if has(ScenarioLimit) {
		lr := &LimitRun{Photos: spec.LimitPhotos, NSource: "--limit"}
		n := spec.Limit
		var base *Result
		if has(ScenarioNone) {
			base = &rep.Runs[0].Result
		}
		if n <= 0 {
			n = math.Round(passedPerSec(*base) / 2)
			lr.NSource = "half of (a)'s"
		}
		if lr.Photos <= 0 {
			lr.Photos = limitBacklog(base.PhotosPerSec(), passedPerSec(*base), n, spec.Lead, spec.Window, spec.Tail)
		}
		w := LimitWindow{From: spec.Lead, To: spec.Lead + spec.Window, N: n}
		plan := faultproxy.Plan{Windows: []faultproxy.Window{{Name: "hard limit", Start: w.From, End: w.To, Rates: faultproxy.Rates{Limit: n}}}}
		label := fmt.Sprintf("(d) limit %.0f req/s", n)
		r.logf("%s from %.0fs to %.0fs after the workers start, on %d photos", label, w.From.Seconds(), w.To.Seconds(), lr.Photos)
		if lr.ThrottleRun, err = run(label, plan, lr.Photos); err != nil {
			return err
		}
		// Recovery is measured against the same run before the limit (the
		// same backlog, the same minute of a shared machine), or else (a).
		ticks := Ticks(lr.Began, lr.Samples)
		ref := BeforeRate(ticks, w.From)
		lr.RefSource = fmt.Sprintf("the %.0f req/s passed before the limit, from %.0fs", ref, StartUp.Seconds())
		if ref <= 0 && base != nil {
			ref = passedPerSec(*base)
			lr.RefSource = fmt.Sprintf("(a)'s %.0f req/s", ref)
		}
		lr.Fit = FitLimit(ticks, w, ref)
		lr.Rows = Rows(ticks, lr.Began, lr.Commits, 5*time.Second, w)
		rep.Limit = lr
	}
	rep.Write(out)
	return nil
}

// passedPerSec is the requests per second the proxy let through to the server
// over the run's time.
func passedPerSec(r Result) float64 {
	return rate(forwarded(r), r.Elapsed)
}

// requests is every S3 request of the run; forwarded those that reached the
// server.
func requests(r Result) int64 {
	var n int64
	for _, v := range r.Requests {
		n += v
	}
	return n
}

func forwarded(r Result) int64 {
	return requests(r) - r.Faults[faultproxy.SlowDown] - r.Faults[faultproxy.InternalError] -
		r.Faults[faultproxy.ResetBefore] - r.Faults[faultproxy.ErrorIn200]
}

// limitBacklog sizes (d)'s backlog: photosPerSec at the unthrottled rate of
// passed requests/s, n/passed of it while the limit holds, for lead, window
// and tail, and a third more, since a small run of (a) understates the rate.
func limitBacklog(photosPerSec, passed, n float64, lead, window, tail time.Duration) int {
	share := 1.0
	if passed > 0 && n < passed {
		share = n / passed
	}
	seconds := lead.Seconds() + window.Seconds()*share + tail.Seconds()
	return int(math.Ceil(photosPerSec * seconds * 4 / 3))
}

// Write prints the scenarios' table, and for (d) its fit and its table over
// time.
func (t ThrottleReport) Write(w io.Writer) {
	fmt.Fprintf(w, "\nthrottle: fleet of %d workers x --concurrency %d, %d CPUs; every S3 request through the fault proxy;\n", t.Workers, t.Concurrency, t.CPUs)
	fmt.Fprintf(w, "a fresh backlog per run, %d photos (--seed %d) for (a) to (c)", t.Photos, t.Seed)
	if t.Limit != nil {
		fmt.Fprintf(w, ", %d for (d)", t.Limit.Photos)
	}
	fmt.Fprintf(w, "\n\n")
	runs := append([]ThrottleRun{}, t.Runs...)
	if t.Limit != nil {
		runs = append(runs, t.Limit.ThrottleRun)
	}
	var base *Result
	if len(t.Runs) > 0 && strings.HasPrefix(t.Runs[0].Label, "(a)") {
		base = &t.Runs[0].Result
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tobjects\tseconds\tobjects/s\tvs (a)\tworker CPU ms/object\tS3 server CPU s\treq/s\tpassed/s\tSlowDown\t500\tthrottled\tmost limit\tphoto retries\tdead-lettered\t")
	for _, r := range runs {
		vs := "-"
		if base != nil {
			vs = fmtRatio(Ratio(r.ObjectsPerSec(), base.ObjectsPerSec()))
		}
		saw, most := 0.0, 0.0
		if n := len(r.Samples); n > 0 {
			saw = r.Samples[n-1].Throttled
		}
		for _, s := range r.Samples {
			most = max(most, s.RateLimit)
		}
		limit := "none"
		if most > 0 {
			limit = fmt.Sprintf("%.0f", most)
		}
		dlq := "?"
		if r.DLQ >= 0 {
			dlq = fmt.Sprint(r.DLQ)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f\t%s\t%s\t%s\t%.0f\t%.0f\t%d\t%d\t%.0f\t%s\t%d (%d)\t%d (DLQ %s)\t\n", r.Label, r.Objects, r.Elapsed.Seconds(), r.ObjectsPerSec(), vs,
			cpuPer(r.Procs.CPU, r.Objects), fmtSeconds(r.ServerCPU), rate(requests(r.Result), r.Elapsed), passedPerSec(r.Result), r.Faults[faultproxy.SlowDown], r.Faults[faultproxy.InternalError], saw, limit,
			r.Retries, r.HandedBack, r.DeadLettered, dlq)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, r := range runs {
		if strings.HasPrefix(r.Label, "(b)") && base != nil {
			fmt.Fprintf(w, "%s: %s of (a)'s objects/s (goal ≥ 0.70)\n", r.Label, fmtRatio(Ratio(r.ObjectsPerSec(), base.ObjectsPerSec())))
		}
		if strings.HasPrefix(r.Label, "(c)") && base != nil {
			fmt.Fprintf(w, "%s: %s of (a)'s objects/s\n", r.Label, fmtRatio(Ratio(r.ObjectsPerSec(), base.ObjectsPerSec())))
		}
		if r.DeadLettered > 0 || r.DLQ > 0 {
			fmt.Fprintf(w, "WARNING: %s dead-lettered photos (%d failed in the ledger, %d in the DLQ): the goal is none\n", r.Label, r.DeadLettered, r.DLQ)
		}
		if r.Unfinished > r.DeadLettered {
			fmt.Fprintf(w, "WARNING: %s left %d photos unfinished: see the worker logs\n", r.Label, r.Unfinished-r.DeadLettered)
		}
	}
	if t.Limit != nil {
		t.Limit.write(w)
	}
}

func (l *LimitRun) write(w io.Writer) {
	f := l.Fit
	win := f.Window
	fmt.Fprintf(w, "\n%s (%s requests let through per second): from %.0fs to %.0fs after the workers started, then lifted\n",
		l.Label, l.NSource, win.From.Seconds(), win.To.Seconds())
	fmt.Fprintf(w, "(per interval: requests sent, let through and answered SlowDown by the proxy; objects committed (ledger);\nthe workers' summed keymigrate_s3_rate_limit at its end)\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "until (s)\tphase\tsent/s\tpassed/s\tvs N\tSlowDown/s\tobjects/s\tworkers' limit\t")
	for _, r := range l.Rows {
		d := r.End - r.Start
		limit := "none"
		if r.RateLimit > 0 {
			limit = fmt.Sprintf("%.0f", r.RateLimit)
		}
		fmt.Fprintf(tw, "%.1f\t%s\t%.0f\t%.0f\t%s\t%.0f\t%.0f\t%s\t\n", r.End.Seconds(), r.Phase, rate(r.Sent, d), rate(r.Forwarded, d),
			fmtRatio(Ratio(rate(r.Forwarded, d), win.N)), rate(r.SlowDowns, d), rate(r.Objects, d), limit)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	if f.ConvergedAfter >= 0 {
		fmt.Fprintf(w, "at the limit after:  %.0fs (from then on, over every %.0fs, passed ≥ %.1f N and sent ≤ %.1f N; goal ≤ 60s)\n",
			f.ConvergedAfter.Seconds(), FitSmoothing.Seconds(), AtLimitLow, AtLimitHigh)
	} else {
		fmt.Fprintf(w, "at the limit after:  not reached by the end of the window (passed ≥ %.1f N and sent ≤ %.1f N over %.0fs)\n", AtLimitLow, AtLimitHigh, FitSmoothing.Seconds())
	}
	fmt.Fprintf(w, "settled (last half): passed %s N, sent %s N, %s of the requests sent answered SlowDown (goal: passed ≥ 0.80 N)\n",
		fmtRatio(f.Settled), fmtRatio(f.SettledSent), fmtPercent(f.SlowDownShare))
	if f.SlowDownShare < 0.01 && f.Settled < AtLimitLow {
		fmt.Fprintf(w, "note: the limit hardly bound: the fleet did not send N requests/s (the machine's load?), so its rate says nothing of the pacing\n")
	}
	switch {
	case f.Reference <= 0:
		fmt.Fprintf(w, "recovered after:     - (no unthrottled rate to compare with)\n")
	case f.RecoveredAfter >= 0:
		fmt.Fprintf(w, "recovered after:     %.0fs (the end of the first %.0fs after the lift that passed ≥ %.1f x %s)\n", f.RecoveredAfter.Seconds(), FitSmoothing.Seconds(), Recovered, l.RefSource)
	default:
		fmt.Fprintf(w, "recovered after:     not within the run (passed ≥ %.1f x %s)\n", Recovered, l.RefSource)
	}
	if f.UnlimitedAfter >= 0 {
		fmt.Fprintf(w, "workers unlimited:   %.0fs after the limit lifted (every keymigrate_s3_rate_limit back to 0)\n", f.UnlimitedAfter.Seconds())
	} else {
		fmt.Fprintf(w, "workers unlimited:   not within the run\n")
	}
	if f.EndedEarly {
		fmt.Fprintf(w, "WARNING: the backlog ran out before the limit lifted: use more photos (--limit-photos) or a shorter window\n")
	}
}

func fmtPercent(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", f*100)
}
