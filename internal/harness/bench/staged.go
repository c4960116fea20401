package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/producer"
)

// StagedSpec is a staged rollout measured against the plan's duration
// estimate: stage 1 enqueues a sample, the plan is calibrated from its
// ledger, stage 2 enqueues the rest.
type StagedSpec struct {
	Fleet FleetSpec
	// SamplePercent is stage 1's producer --sample.
	SamplePercent float64
	// Calibrate is the scratch calibration's --calibrate N before stage 1
	// (0: none).
	Calibrate int
	// Migratectl is the built migratectl binary the plans are made with.
	Migratectl string
}

// PlanFigures are what one `migratectl plan --json` said about the duration.
type PlanFigures struct {
	Args       []string `json:"args"`
	Source     string   `json:"source"`
	Calibrated int64    `json:"calibration_photos"`
	P50, P90   float64  // per-photo latency, seconds
	// Occupancy and PeakInFlight are the calibrating run's (ledger only).
	Occupancy    float64 `json:"occupancy"`
	PeakInFlight int64   `json:"peak_in_flight"`
	ToMigrate    int64   `json:"to_migrate"`
	RateP50      float64 `json:"photos_per_second_p50"`
	SecondsP50   float64 `json:"seconds_p50"`
	SecondsP90   float64 `json:"seconds_p90"`
}

// StageResult is one stage: a producer run, then the fleet draining it.
type StageResult struct {
	RunID    string `json:"run_id"`
	Enqueued int64  `json:"enqueued"`
	// Migrated counts the run's photos the ledger records as moved;
	// Archived the ownerless ones the workers archived.
	Migrated, Archived int64
	// Produce is the producer run; Wall the producer's start to the last
	// worker's exit; Span the first migrated photo's start to the last swap
	// (what the plan's duration estimates), from the ledger.
	Produce, Wall, Span time.Duration
	// P50, P90 and Mean are the per-photo latency (start to swap, seconds)
	// over the migrated photos; InFlight is the mean number of photos in
	// flight over Span (the latencies' sum ÷ Span, Little's law).
	P50, P90, Mean, InFlight float64
	// PeakInFlight is the most photos between their start and swap at once.
	PeakInFlight int
}

// PhotosPerSec is the stage's rate over Span.
func (s StageResult) PhotosPerSec() float64 { return rate(s.Migrated, s.Span) }

// StagedReport is a staged run's figures.
type StagedReport struct {
	Photos        int     `json:"photos"`
	Seed          uint64  `json:"seed"`
	Workers       int     `json:"workers"`
	Concurrency   int     `json:"concurrency"`
	SamplePercent float64 `json:"sample_percent"`
	// Scratch is the plan before stage 1 with --calibrate N (nil: not run);
	// Plan the plan between the stages with --calibrate-run <stage 1>.
	Scratch        *PlanFigures `json:"scratch,omitempty"`
	Stage1         StageResult  `json:"stage1"`
	Plan           PlanFigures  `json:"plan"`
	Stage2         StageResult  `json:"stage2"`
	RemainingAfter int64        `json:"remaining_after_stage1"`
}

// Ratio is stage 2's measured span over the plan's p50 duration (1: exact;
// above 1: the plan was optimistic); 0 when either is unknown.
func (r StagedReport) Ratio() float64 {
	if r.Plan.SecondsP50 <= 0 || r.Stage2.Span <= 0 {
		return 0
	}
	return r.Stage2.Span.Seconds() / r.Plan.SecondsP50
}

// Within25 says whether the plan's p50 duration is within 25% of stage 2's
// measured span.
func (r StagedReport) Within25() bool {
	return r.Ratio() > 0 && math.Abs(r.Plan.SecondsP50-r.Stage2.Span.Seconds()) <= 0.25*r.Stage2.Span.Seconds()
}

// StagedRun seeds cfg.Photos photos without enqueueing them, optionally
// plans with a scratch calibration, runs stage 1 (a producer run on a
// SamplePercent sample drained by the fleet), plans with --calibrate-run
// stage 1, runs stage 2 (the rest), and returns the figures.
func StagedRun(ctx context.Context, cfg Config, spec StagedSpec) (StagedReport, error) {
	rep := StagedReport{Photos: cfg.Photos, Seed: cfg.Seed, Workers: spec.Fleet.Workers, Concurrency: spec.Fleet.Concurrency, SamplePercent: spec.SamplePercent}
	if spec.Migratectl == "" {
		return rep, errors.New("bench: the migratectl binary is required (--migratectl)")
	}
	if spec.Fleet.Workers <= 0 || spec.Fleet.Concurrency <= 0 {
		return rep, fmt.Errorf("bench: --workers %d, --concurrency %d: both must be positive", spec.Fleet.Workers, spec.Fleet.Concurrency)
	}
	if spec.SamplePercent <= 0 || spec.SamplePercent >= 100 {
		return rep, fmt.Errorf("bench: --sample %g: stage 1's share of the photos, above 0 and below 100", spec.SamplePercent)
	}
	r, err := newRunner(ctx, cfg, faultproxy.Plan{}, spec.Fleet.Workers*spec.Fleet.Concurrency)
	if err != nil {
		return rep, err
	}
	defer r.close()
	r.seq++
	name := fmt.Sprintf("kmbench-%s-%d", r.stamp, r.seq)
	r.logf("seeding %d photos into %s (not enqueued)", cfg.Photos, name)
	b, err := cfg.Stack.NewSeeded(ctx, name, cfg.Photos, cfg.Seed)
	if err != nil {
		return rep, err
	}
	defer r.drop(ctx, b)

	if spec.Calibrate > 0 {
		p, err := r.plan(ctx, b, spec, "--calibrate", strconv.Itoa(spec.Calibrate))
		if err != nil {
			return rep, err
		}
		rep.Scratch = &p
	}
	if rep.Stage1, err = r.stage(ctx, b, "stage1", &ledger.Selection{SamplePercent: spec.SamplePercent}, spec.Fleet); err != nil {
		return rep, err
	}
	if rep.Plan, err = r.plan(ctx, b, spec, "--calibrate-run", rep.Stage1.RunID); err != nil {
		return rep, err
	}
	rep.RemainingAfter = rep.Plan.ToMigrate
	if rep.Stage2, err = r.stage(ctx, b, "stage2", nil, spec.Fleet); err != nil {
		return rep, err
	}
	return rep, nil
}

// plan runs `migratectl plan --json` on the backlog (its S3 requests
// through the proxy, as the workers') for the fleet, with extra flags.
func (r *runner) plan(ctx context.Context, b *Backlog, spec StagedSpec, extra ...string) (PlanFigures, error) {
	args := append([]string{"plan", "--quiet", "--json", "--workers", strconv.Itoa(spec.Fleet.Workers),
		"--concurrency", strconv.Itoa(spec.Fleet.Concurrency)}, extra...)
	r.logf("migratectl %v", args)
	cmd := exec.CommandContext(ctx, spec.Migratectl, args...)
	cmd.Env = b.Environ(os.Environ(), r.proxy.URL())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return PlanFigures{}, fmt.Errorf("migratectl %v: %w: %s", args, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return parsePlan(args, out)
}

// parsePlan reads the duration figures of a plan's JSON report.
func parsePlan(args []string, out []byte) (PlanFigures, error) {
	var rep struct {
		Photos struct {
			ToMigrate int64 `json:"to_migrate"`
		} `json:"photos"`
		Estimate struct {
			Calibration struct {
				Source string  `json:"source"`
				Photos int64   `json:"photos"`
				P50    float64 `json:"p50_seconds"`
				P90    float64 `json:"p90_seconds"`
				Occ    float64 `json:"occupancy"`
				Peak   int64   `json:"peak_in_flight"`
			} `json:"calibration"`
			RateP50    float64 `json:"photos_per_second_p50"`
			SecondsP50 float64 `json:"seconds_p50"`
			SecondsP90 float64 `json:"seconds_p90"`
		} `json:"estimate"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return PlanFigures{}, fmt.Errorf("migratectl %v: not a plan's JSON report: %w", args, err)
	}
	e := rep.Estimate
	p := PlanFigures{Args: args, Source: e.Calibration.Source, Calibrated: e.Calibration.Photos, P50: e.Calibration.P50, P90: e.Calibration.P90,
		Occupancy: e.Calibration.Occ, PeakInFlight: e.Calibration.Peak, ToMigrate: rep.Photos.ToMigrate, RateP50: e.RateP50, SecondsP50: e.SecondsP50, SecondsP90: e.SecondsP90}
	if p.SecondsP50 <= 0 {
		return p, fmt.Errorf("migratectl %v: the plan gave no duration (calibration %q)", args, p.Source)
	}
	return p, nil
}

// stage runs the producer with sel (nil: every legacy photo left), then the
// fleet until the queue is drained, and reads the run's photos back from the
// ledger. The workers start once the producer has finished, as an operator
// running a stage would see it; Wall includes both.
func (r *runner) stage(ctx context.Context, b *Backlog, name string, sel *ledger.Selection, spec FleetSpec) (StageResult, error) {
	var s StageResult
	start := time.Now()
	sum, err := producer.New(b.Store, b.Queue(), zap.NewNop(), producer.Config{NewRun: true, Selection: sel}).Run(ctx)
	if err != nil {
		return s, fmt.Errorf("%s: producer: %w", name, err)
	}
	s.RunID, s.Enqueued, s.Produce = sum.RunID, sum.Enqueued, time.Since(start)
	r.logf("%s: run %s enqueued %d photos in %.2fs; %d worker process(es) at --concurrency %d", name, s.RunID, s.Enqueued, s.Produce.Seconds(), spec.Workers, spec.Concurrency)
	if _, _, err := runFleet(ctx, r.cfg.WorkerBin, b.Environ(os.Environ(), r.proxy.URL()), r.cfg.LogDir, b.Name+"-"+name, spec, nil); err != nil {
		return s, fmt.Errorf("%s: %w", name, err)
	}
	s.Wall = time.Since(start)
	var ps []ledger.ReportPhoto
	for after := ""; ; {
		page, err := b.Store.RunReportPage(ctx, s.RunID, after, 1000)
		if err != nil {
			return s, fmt.Errorf("%s: %w", name, err)
		}
		ps = append(ps, page...)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].PhotoID
	}
	measureStage(&s, ps)
	r.logf("%s: %d migrated, %d archived; ledger span %.2fs (%.0f photos/s), wall %.2fs; per photo p50 %.0fms, mean %.0fms; %.1f in flight on average",
		name, s.Migrated, s.Archived, s.Span.Seconds(), s.PhotosPerSec(), s.Wall.Seconds(), s.P50*1000, s.Mean*1000, s.InFlight)
	return s, nil
}

// measureStage fills in what the ledger says of a stage's photos.
func measureStage(s *StageResult, ps []ledger.ReportPhoto) {
	var first, last time.Time
	var lat []float64
	type event struct {
		at    time.Time
		delta int
	}
	var events []event
	sum := 0.0
	for _, p := range ps {
		switch {
		case p.State == ledger.StateArchived:
			s.Archived++
		case p.State.Moved() && p.StartedAt != nil && p.SwappedAt != nil:
			s.Migrated++
			if first.IsZero() || p.StartedAt.Before(first) {
				first = *p.StartedAt
			}
			if p.SwappedAt.After(last) {
				last = *p.SwappedAt
			}
			d := p.SwappedAt.Sub(*p.StartedAt).Seconds()
			lat = append(lat, d)
			sum += d
			events = append(events, event{*p.StartedAt, 1}, event{*p.SwappedAt, -1})
		}
	}
	if len(lat) == 0 {
		return
	}
	s.Span = last.Sub(first)
	slices.Sort(lat)
	s.P50, s.P90, s.Mean = percentile(lat, 0.5), percentile(lat, 0.9), sum/float64(len(lat))
	if s.Span > 0 {
		s.InFlight = sum / s.Span.Seconds()
	}
	// As the ledger's RunMigrationLatency counts it: a swap before a start
	// at the same instant.
	slices.SortFunc(events, func(a, b event) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	n := 0
	for _, e := range events {
		n += e.delta
		s.PeakInFlight = max(s.PeakInFlight, n)
	}
}

// percentile is Postgres's percentile_cont (linear interpolation) of sorted
// values, as the plan reads the ledger's.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	x := q * float64(len(sorted)-1)
	i := int(x)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (x-float64(i))*(sorted[i+1]-sorted[i])
}

// Write prints the staged report.
func (r StagedReport) Write(w io.Writer) {
	ms := func(s float64) string { return fmt.Sprintf("%.0fms", s*1000) }
	fmt.Fprintf(w, "Staged rollout: %d photos (seed %d), %d workers × %d concurrency; stage 1 a %g%% sample, stage 2 the rest\n\n",
		r.Photos, r.Seed, r.Workers, r.Concurrency, r.SamplePercent)
	if s := r.Scratch; s != nil {
		fmt.Fprintf(w, "before stage 1, scratch calibration (--calibrate %d): p50 %s, p90 %s; %.0f photos/s; %.2fs for %d photos\n",
			s.Calibrated, ms(s.P50), ms(s.P90), s.RateP50, s.SecondsP50, s.ToMigrate)
		if r.Stage1.P50 > 0 {
			fmt.Fprintf(w, "  a worker's real per-photo p50 (stage 1's ledger) is %s: the scratch p50 is %.2f× it (%s)\n",
				ms(r.Stage1.P50), s.P50/r.Stage1.P50, howFar(s.P50, r.Stage1.P50))
		}
	}
	stage := func(name string, s StageResult) {
		fmt.Fprintf(w, "%s (run %s): %d enqueued, %d migrated, %d archived; producer %.2fs, wall (producer start to drain) %.2fs\n",
			name, s.RunID, s.Enqueued, s.Migrated, s.Archived, s.Produce.Seconds(), s.Wall.Seconds())
		fmt.Fprintf(w, "  ledger span (first start to last swap) %.2fs: %.0f photos/s; per photo p50 %s, p90 %s, mean %s; %.1f photos in flight on average, %d at most (of %d slots)\n",
			s.Span.Seconds(), s.PhotosPerSec(), ms(s.P50), ms(s.P90), ms(s.Mean), s.InFlight, s.PeakInFlight, r.Workers*r.Concurrency)
	}
	stage("stage 1", r.Stage1)
	p := r.Plan
	fmt.Fprintf(w, "plan --calibrate-run %s: p50 %s, p90 %s over %d photos, %.0f%% of the slots busy (peak %d in flight); %.0f photos/s; %.2fs at p50, %.2fs at p90, for %d photos\n",
		r.Stage1.RunID, ms(p.P50), ms(p.P90), p.Calibrated, p.Occupancy*100, p.PeakInFlight, p.RateP50, p.SecondsP50, p.SecondsP90, p.ToMigrate)
	stage("stage 2", r.Stage2)
	verdict := "outside 25%"
	if r.Within25() {
		verdict = "within 25%"
	}
	fmt.Fprintf(w, "\nestimate (p50) %.2fs vs measured %.2fs (ledger span; wall %.2fs): measured ÷ estimate = %.2f, %s\n",
		p.SecondsP50, r.Stage2.Span.Seconds(), r.Stage2.Wall.Seconds(), r.Ratio(), verdict)
	if r.Stage2.Migrated != r.RemainingAfter {
		fmt.Fprintf(w, "stage 2 migrated %d photos, but the plan counted %d to migrate\n", r.Stage2.Migrated, r.RemainingAfter)
	}
}

// howFar words a calibration's distance from the real latency.
func howFar(got, real float64) string {
	switch f := got / real; {
	case f < 1:
		return fmt.Sprintf("%.0f%% below it: the plan would be %.1f× too optimistic", (1-f)*100, 1/f)
	default:
		return fmt.Sprintf("%.0f%% above it", (f-1)*100)
	}
}
