package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
)

// second is one second of a synthetic run: requests sent and let through
// (the rest answered SlowDown) and the workers' summed limit at its end.
type second struct {
	sent, passed int64
	limit        float64
}

// samples turns seconds into the cumulative samples a run records, the
// first at began.
func samples(began time.Time, secs []second) []Sample {
	out := []Sample{{At: began}}
	var s Sample
	for i, x := range secs {
		s.At = began.Add(time.Duration(i+1) * time.Second)
		s.Requests += x.sent
		s.Forwarded += x.passed
		s.SlowDowns += x.sent - x.passed
		s.RateLimit = x.limit
		out = append(out, s)
	}
	return out
}

func repeat(n int, x second) []second {
	out := make([]second, n)
	for i := range out {
		out[i] = x
	}
	return out
}

// A fleet at 200 req/s meets a limit of 100 from 10 s to 30 s: it
// overshoots for 3 s, collapses for 2, then holds the limit with a tenth of
// its requests throttled; after the lift it stays paced for 3 s, and its
// workers drop their limits at 37 s.
func limitRun(began time.Time) []Sample {
	var secs []second
	secs = append(secs, repeat(10, second{200, 200, 0})...)
	secs = append(secs, repeat(3, second{300, 100, 150})...)
	secs = append(secs, repeat(2, second{40, 40, 40})...)
	secs = append(secs, repeat(15, second{110, 100, 105})...)
	secs = append(secs, repeat(3, second{110, 110, 115})...)
	secs = append(secs, repeat(3, second{200, 200, 120})...)
	secs = append(secs, repeat(4, second{200, 200, 0})...)
	return samples(began, secs)
}

func TestTicksAreTheDifferencesOfSamples(t *testing.T) {
	t.Parallel()
	began := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := samples(began, []second{{10, 8, 0}, {20, 20, 7}})
	s = append(s, Sample{At: s[2].At, Requests: 99}) // out of order: skipped
	ticks := Ticks(began, s)
	require.Equal(t, []Tick{
		{Start: 0, End: time.Second, Sent: 10, Forwarded: 8, SlowDowns: 2},
		{Start: time.Second, End: 2 * time.Second, Sent: 20, Forwarded: 20, RateLimit: 7},
	}, ticks)
	require.Empty(t, Ticks(began, s[:1]))
}

func TestFitLimitFindsConvergenceSettlingAndRecovery(t *testing.T) {
	t.Parallel()
	began := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ticks := Ticks(began, limitRun(began))
	w := LimitWindow{From: 10 * time.Second, To: 30 * time.Second, N: 100}
	f := FitLimit(ticks, w, 200)

	// The 5-s spans ending at 16 to 18 s hold the collapse (passed < 80/s)
	// or the overshoot (sent > 120/s); the one ending at 19 s passes 88/s
	// and sends 96/s, and every later one is at the limit.
	require.Equal(t, 9*time.Second, f.ConvergedAfter)
	require.InDelta(t, 1.0, f.Settled, 1e-9, "the last half (20-30 s) passed 100/s")
	require.InDelta(t, 1.1, f.SettledSent, 1e-9)
	require.InDelta(t, 10.0/110, f.SlowDownShare, 1e-9)
	require.Equal(t, 6*time.Second, f.RecoveredAfter, "31 to 36 s is the first 5-s span after the lift at ≥ 160/s (164)")
	require.Equal(t, 7*time.Second, f.UnlimitedAfter)
	require.False(t, f.EndedEarly)

	// Without a reference there is no recovery to measure; the rest stands.
	require.Equal(t, time.Duration(-1), FitLimit(ticks, w, 0).RecoveredAfter)

	// Cut off before the lift: the run ended early, nothing after it.
	early := FitLimit(ticks[:25], w, 200)
	require.True(t, early.EndedEarly)
	require.Equal(t, 9*time.Second, early.ConvergedAfter, "the spans seen were at the limit from 19 s on")
	require.Equal(t, time.Duration(-1), early.RecoveredAfter)
	require.Equal(t, time.Duration(-1), early.UnlimitedAfter)

	// One second at full rate after the lift is no recovery.
	var spike []second
	spike = append(spike, repeat(30, second{110, 100, 105})...)
	spike = append(spike, second{300, 300, 0})
	spike = append(spike, repeat(10, second{100, 100, 0})...)
	require.Equal(t, time.Duration(-1), FitLimit(Ticks(began, samples(began, spike)), w, 200).RecoveredAfter)

	// A fleet that ends the window below the limit never converged.
	collapsed := samples(began, repeat(40, second{50, 50, 50}))
	c := FitLimit(Ticks(began, collapsed), w, 200)
	require.Equal(t, time.Duration(-1), c.ConvergedAfter)
	require.InDelta(t, 0.5, c.Settled, 1e-9)
	require.Zero(t, c.SlowDownShare)

	// One that hammers the limit (sends 3 N) never converged either,
	// although the proxy lets N through.
	hammering := samples(began, repeat(40, second{300, 100, 0}))
	require.Equal(t, time.Duration(-1), FitLimit(Ticks(began, hammering), w, 200).ConvergedAfter)
}

func TestBeforeRateLeavesOutTheStart(t *testing.T) {
	t.Parallel()
	began := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	secs := []second{{50, 50, 0}, {100, 100, 0}, {200, 200, 0}, {220, 220, 0}, {300, 100, 0}}
	ticks := Ticks(began, samples(began, secs))
	require.InDelta(t, 210.0, BeforeRate(ticks, 4*time.Second), 1e-9, "seconds 2 to 4")
	require.Zero(t, BeforeRate(ticks, 2*time.Second), "nothing after the start-up")
}

func TestRowsGroupTicksAndNameTheirPhase(t *testing.T) {
	t.Parallel()
	began := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ticks := Ticks(began, limitRun(began))
	commits := []time.Time{began.Add(500 * time.Millisecond), began.Add(5 * time.Second), began.Add(5100 * time.Millisecond), began.Add(time.Hour)}
	w := LimitWindow{From: 10 * time.Second, To: 30 * time.Second, N: 100}
	rows := Rows(ticks, began, commits, 5*time.Second, w)
	require.Len(t, rows, 8)
	require.Equal(t, Row{Start: 0, End: 5 * time.Second, Sent: 1000, Forwarded: 1000, Objects: 2, Phase: PhaseBefore}, rows[0])
	require.EqualValues(t, 1, rows[1].Objects, "a commit on a row's end is that row's")
	require.Equal(t, PhaseLimited, rows[2].Phase)
	require.EqualValues(t, 3*300+2*40, rows[2].Sent)
	require.EqualValues(t, 3*200, rows[2].SlowDowns)
	require.EqualValues(t, 40, rows[2].RateLimit, "the limit at the row's end")
	require.Equal(t, []string{PhaseAfter, PhaseAfter}, []string{rows[6].Phase, rows[7].Phase})

	shifted := Rows(ticks, began, nil, 5*time.Second, LimitWindow{From: 12 * time.Second, To: 27 * time.Second})
	require.Equal(t, []string{PhaseBefore, PhaseBefore, PhaseBegins, PhaseLimited, PhaseLimited, PhaseLifts, PhaseAfter, PhaseAfter},
		[]string{shifted[0].Phase, shifted[1].Phase, shifted[2].Phase, shifted[3].Phase, shifted[4].Phase, shifted[5].Phase, shifted[6].Phase, shifted[7].Phase})
}

// Samples are taken a little after each second: the rows still end near
// whole multiples of 5 s, and a row that overlaps the window by a few
// milliseconds is not the limit's.
func TestRowsOfLateSamples(t *testing.T) {
	t.Parallel()
	began := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := samples(began, append(repeat(20, second{100, 100, 0}), repeat(6, second{0, 0, 0})...))
	for i := range s[1:] {
		s[i+1].At = s[i+1].At.Add(30 * time.Millisecond)
	}
	rows := Rows(Ticks(began, s), began, nil, 5*time.Second, LimitWindow{From: 5 * time.Second, To: 15 * time.Second, N: 100})
	require.Len(t, rows, 4, "and the idle seconds at the end are left out")
	require.Equal(t, 5030*time.Millisecond, rows[0].End)
	require.Equal(t, []string{PhaseBefore, PhaseLimited, PhaseLimited, PhaseAfter}, []string{rows[0].Phase, rows[1].Phase, rows[2].Phase, rows[3].Phase})
}

func TestLimitBacklogOutlastsTheWindow(t *testing.T) {
	t.Parallel()
	// 10 photos/s at 100 req/s; half of it for the 60-s window: 10 + 30 + 20
	// full-rate seconds, and a third more.
	require.Equal(t, 800, limitBacklog(10, 100, 50, 10*time.Second, 60*time.Second, 20*time.Second))
	require.Equal(t, 1200, limitBacklog(10, 100, 500, 10*time.Second, 60*time.Second, 20*time.Second), "a limit above the rate does not slow it")
}

func TestThrottleReportPrintsEveryScenario(t *testing.T) {
	t.Parallel()
	began := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	run := func(label string, objects int64, faults map[faultproxy.Fault]int64) ThrottleRun {
		return ThrottleRun{Label: label, Result: Result{Objects: objects, Elapsed: 10 * time.Second,
			Requests: map[faultproxy.Op]int64{faultproxy.OpHeadObject: 3000, faultproxy.OpCopyObject: 1000}, Faults: faults}}
	}
	lim := &LimitRun{ThrottleRun: run("(d) limit 100 req/s", 900, map[faultproxy.Fault]int64{faultproxy.SlowDown: 400}), Photos: 500, NSource: "half of (a)'s",
		RefSource: "the 200 req/s passed before the limit, from 2s"}
	lim.DeadLettered, lim.DLQ = 1, 1
	ticks := Ticks(began, limitRun(began))
	w := LimitWindow{From: 10 * time.Second, To: 30 * time.Second, N: 100}
	lim.Fit, lim.Rows = FitLimit(ticks, w, 200), Rows(ticks, began, nil, 5*time.Second, w)
	rep := ThrottleReport{Photos: 300, Workers: 2, Concurrency: 16, CPUs: 2, FaultRate: 0.05, Limit: lim, Runs: []ThrottleRun{
		run("(a) no faults", 1000, nil),
		run("(b) 5% SlowDown", 800, map[faultproxy.Fault]int64{faultproxy.SlowDown: 200}),
		run("(c) 5% InternalError", 1000, map[faultproxy.Fault]int64{faultproxy.InternalError: 200}),
	}}
	rep.Runs[1].Procs.CPU, rep.Runs[1].ServerCPU = 2*time.Second, 3*time.Second
	var b bytes.Buffer
	rep.Write(&b)
	out := b.String()
	for _, want := range []string{
		"(b) 5% SlowDown: 0.80 of (a)'s objects/s (goal ≥ 0.70)",
		"(c) 5% InternalError: 1.00 of (a)'s objects/s",
		"WARNING: (d) limit 100 req/s dead-lettered photos (1 failed in the ledger, 1 in the DLQ)",
		"at the limit after:  9s",
		"settled (last half): passed 1.00 N, sent 1.10 N, 9.1% of the requests sent answered SlowDown",
		"recovered after:     6s",
		"workers unlimited:   7s",
	} {
		require.Contains(t, out, want)
	}
	// passed/s: (4000 - 200 answered) / 10 s for (b).
	require.Regexp(t, `\(b\) 5% SlowDown\s+800\s+10\.0\s+80\s+0\.80\s+2\.50\s+3\.0\s+400\s+380\s+200\s+0\s+0\s+none`, out)
}
