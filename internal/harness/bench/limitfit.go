package bench

import (
	"time"
)

// Tick is the interval between two consecutive samples of a run: what the
// proxy counted in it, and the workers' summed S3 rate limit at its end.
type Tick struct {
	Start, End time.Duration // since the run began
	// Sent is every request the proxy received; Forwarded those it let
	// through to the server; SlowDowns those it answered 503 SlowDown.
	Sent, Forwarded, SlowDowns int64
	RateLimit                  float64 // requests/s, 0: no worker limited
}

// Ticks turns a run's samples (cumulative counters, the first taken when the
// run began) into intervals. Samples out of order are skipped.
func Ticks(began time.Time, samples []Sample) []Tick {
	var out []Tick
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		if !b.At.After(a.At) {
			continue
		}
		out = append(out, Tick{
			Start: a.At.Sub(began), End: b.At.Sub(began),
			Sent: b.Requests - a.Requests, Forwarded: b.Forwarded - a.Forwarded, SlowDowns: b.SlowDowns - a.SlowDowns,
			RateLimit: b.RateLimit,
		})
	}
	return out
}

// StartUp is how much of a run's beginning BeforeRate leaves out: the
// workers' start and their first photos in flight.
const StartUp = 2 * time.Second

// BeforeRate is the requests per second let through in the ticks that end
// by until, leaving out those that began within StartUp (0 if none): the
// fleet's unthrottled rate in the run itself, before a limit.
func BeforeRate(ticks []Tick, until time.Duration) float64 {
	var fwd int64
	var from, to time.Duration = -1, 0
	for _, t := range ticks {
		if t.Start < StartUp || t.End > until {
			continue
		}
		if from < 0 {
			from = t.Start
		}
		to = t.End
		fwd += t.Forwarded
	}
	if from < 0 {
		return 0
	}
	return rate(fwd, to-from)
}

// LimitWindow is a hard limit of N requests/s the proxy held from From to To
// (since the run began).
type LimitWindow struct {
	From, To time.Duration
	N        float64
}

// The bounds of "at the limit" and of "recovered".
const (
	// AtLimitLow and AtLimitHigh: over FitSmoothing, the fleet is at the
	// limit when the requests the proxy let through are at least AtLimitLow
	// x N (it did not collapse below the limit) and those it sent, SlowDowns
	// included, at most AtLimitHigh x N (it is not hammering the limit: with
	// a token bucket in front, the requests let through are N whenever the
	// fleet sends more, so they alone cannot tell).
	AtLimitLow, AtLimitHigh = 0.8, 1.2
	// FitSmoothing is the trailing span the rates above are averaged over.
	FitSmoothing = 5 * time.Second
	// Recovered is the share of the unthrottled rate that counts as recovered.
	Recovered = 0.8
)

// LimitFit is how a fleet met a hard limit. Durations are -1 when the event
// was not seen in the run.
type LimitFit struct {
	Window LimitWindow
	// ConvergedAfter is the time from the limit's start to the end of the
	// first FitSmoothing span (within the window) from which every later
	// one, until the limit lifted, had the fleet at the limit (AtLimitLow,
	// AtLimitHigh); so it is at least FitSmoothing.
	ConvergedAfter time.Duration
	// Settled and SettledSent are the requests let through and sent per
	// second over the last half of the window, as fractions of N;
	// SlowDownShare the share of the requests sent then answered SlowDown.
	Settled, SettledSent, SlowDownShare float64
	// Reference is the unthrottled rate recovery is measured against
	// (requests let through per second).
	Reference float64
	// RecoveredAfter is the time from the limit's end to the end of the
	// first FitSmoothing span after it over which the requests let through
	// per second reached Recovered x Reference (so it is at least
	// FitSmoothing).
	RecoveredAfter time.Duration
	// UnlimitedAfter is the time from the limit's end to the first sample at
	// which no worker held itself to a rate limit any more.
	UnlimitedAfter time.Duration
	// EndedEarly: the run ended before the limit lifted (the backlog was too
	// small), so nothing after the window, and maybe not its end, was seen.
	EndedEarly bool
}

// FitLimit measures, from a run's ticks, how the fleet met the hard limit w:
// how long until it held the limit, at what rate it settled, and how long
// until it recovered reference requests/s once the limit lifted.
func FitLimit(ticks []Tick, w LimitWindow, reference float64) LimitFit {
	f := LimitFit{Window: w, Reference: reference, ConvergedAfter: -1, RecoveredAfter: -1, UnlimitedAfter: -1}
	if len(ticks) == 0 || ticks[len(ticks)-1].End < w.To {
		f.EndedEarly = true
	}
	// The ticks wholly inside the window.
	var in []Tick
	for _, t := range ticks {
		if t.Start >= w.From && t.End <= w.To {
			in = append(in, t)
		}
	}
	if w.N > 0 && len(in) > 0 {
		// The first span from which every later one was at the limit.
		spans := trailing(in)
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.passed < AtLimitLow*w.N || sp.sent > AtLimitHigh*w.N {
				break
			}
			f.ConvergedAfter = sp.end - w.From
		}
		// The last half of the window.
		var fwd, sent, slow int64
		var from, to time.Duration = -1, 0
		for _, t := range in {
			if t.Start < w.From+(w.To-w.From)/2 {
				continue
			}
			if from < 0 {
				from = t.Start
			}
			to = t.End
			fwd, sent, slow = fwd+t.Forwarded, sent+t.Sent, slow+t.SlowDowns
		}
		if from >= 0 && to > from {
			f.Settled = rate(fwd, to-from) / w.N
			f.SettledSent = rate(sent, to-from) / w.N
			f.SlowDownShare = Ratio(float64(slow), float64(sent))
		}
	}
	var after []Tick
	for _, t := range ticks {
		if t.End <= w.To {
			continue
		}
		if f.UnlimitedAfter < 0 && t.RateLimit == 0 {
			f.UnlimitedAfter = t.End - w.To
		}
		if t.Start >= w.To {
			after = append(after, t)
		}
	}
	if reference > 0 {
		for _, sp := range trailing(after) {
			if sp.passed >= Recovered*reference {
				f.RecoveredAfter = sp.end - w.To
				break
			}
		}
	}
	return f
}

// span is the rates over the FitSmoothing before end.
type span struct {
	end          time.Duration
	passed, sent float64 // requests/s
}

// trailing is, for each of ticks (consecutive) that closes a full
// FitSmoothing since the first, the rates over the FitSmoothing it ends.
func trailing(ticks []Tick) []span {
	const slack = 100 * time.Millisecond // samples are about a second apart, not exactly
	var out []span
	for i := range ticks {
		j := i
		for j > 0 && ticks[j-1].Start >= ticks[i].End-FitSmoothing-slack {
			j--
		}
		d := ticks[i].End - ticks[j].Start
		if d < FitSmoothing-slack {
			continue
		}
		var fwd, sent int64
		for _, t := range ticks[j : i+1] {
			fwd += t.Forwarded
			sent += t.Sent
		}
		out = append(out, span{end: ticks[i].End, passed: rate(fwd, d), sent: rate(sent, d)})
	}
	return out
}

// Row is a stretch of a limit run, for its table: several ticks together.
type Row struct {
	Start, End                 time.Duration
	Sent, Forwarded, SlowDowns int64
	Objects                    int64   // committed in the row (the ledger)
	RateLimit                  float64 // the workers' summed limit at its end
	Phase                      string
}

// The phases of a row.
const (
	PhaseBefore  = "before"
	PhaseBegins  = "limit begins"
	PhaseLimited = "limited"
	PhaseLifts   = "limit lifts"
	PhaseAfter   = "lifted"
)

// Rows groups ticks into rows of about width (each tick goes to the row its
// middle falls in, so that samples taken a little after each whole second
// still make rows ending on whole multiples of width; a row spans its
// ticks), counts the objects committed in each, and names its phase against
// w. Rows at the end with neither requests nor commits are left out.
func Rows(ticks []Tick, began time.Time, commits []time.Time, width time.Duration, w LimitWindow) []Row {
	if width <= 0 {
		return nil
	}
	var rows []Row
	index := -1
	for _, t := range ticks {
		k := int((t.Start + t.End) / 2 / width)
		if index < 0 || k != index {
			rows = append(rows, Row{Start: t.Start})
			index = k
		}
		r := &rows[len(rows)-1]
		r.End = t.End
		r.Sent += t.Sent
		r.Forwarded += t.Forwarded
		r.SlowDowns += t.SlowDowns
		r.RateLimit = t.RateLimit
	}
	for _, c := range commits {
		at := c.Sub(began)
		for i := range rows {
			if at > rows[i].Start && at <= rows[i].End {
				rows[i].Objects++
				break
			}
		}
	}
	// The workers' last empty polls (--drain) are no part of the run.
	for len(rows) > 0 && rows[len(rows)-1].Sent == 0 && rows[len(rows)-1].Objects == 0 {
		rows = rows[:len(rows)-1]
	}
	for i := range rows {
		rows[i].Phase = phase(rows[i].Start, rows[i].End, w)
	}
	return rows
}

// phase names where a stretch from start to end lies against w: a stretch
// nine tenths or more inside the window is limited, one a tenth or less
// inside it is before or after, and the rest straddle a boundary (samples
// are taken a few milliseconds after each second: a row that overlaps the
// window by that much is not the limit's).
func phase(start, end time.Duration, w LimitWindow) string {
	inside := min(end, w.To) - max(start, w.From)
	share := 0.0
	if end > start && inside > 0 {
		share = float64(inside) / float64(end-start)
	}
	switch {
	case share >= 0.9:
		return PhaseLimited
	case share <= 0.1 && (start+end)/2 < w.From:
		return PhaseBefore
	case share <= 0.1:
		return PhaseAfter
	case start < w.From:
		return PhaseBegins
	}
	return PhaseLifts
}
