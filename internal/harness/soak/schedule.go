// Package soak runs keymigrate as a whole under a live application and
// failing infrastructure, and checks at the end that nothing was lost: the
// built binaries (producer, workers, migratectl) run as processes against the
// local stack, with their S3 traffic through a fault proxy
// (internal/harness/faultproxy) and their Postgres and SQS traffic through TCP fault
// proxies (internal/harness/netfault), while an application simulator
// (internal/harness/appsim) serves and writes through the Phase 1 StorageService and
// workers are killed, rescaled, paused, throttled, rolled back and cleaned up
// after. The invariants compare S3, the photos table and the ledger with the
// simulator's model.
//
// The soak is driven by `go test` (see soak_test.go and docs/soak.md). This
// package is a test tool: nothing in the production binaries imports it.
package soak

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
)

// Config is everything a soak run does, generated from its seed: a seed
// replays the same schedule of faults, kills and operator actions and the same
// application choices, though not the same interleaving of the processes.
type Config struct {
	Seed     uint64        `json:"seed"`
	Duration time.Duration `json:"duration"`
	// Baseline is how long the application runs before the migration starts
	// (its read latencies are the "without migration" figures).
	Baseline time.Duration `json:"baseline"`
	// FinishTimeout bounds the operator's finishing sequence (drain, idle).
	FinishTimeout time.Duration `json:"finish_timeout"`

	Photos   int `json:"photos"`
	Problems int `json:"problems"`
	// Shaped legacy photos have real object shapes (appsim.PopulateOptions):
	// a 6-12 MiB original or animation, copied part by part because the
	// workers' MultipartThreshold is lowered to PartSize.
	Shaped int `json:"shaped"`
	// MultipartThreshold and PartSize are the workers' --multipart-threshold
	// and --part-size (production: 5 GiB and 256 MiB): lowered, so that the
	// shaped objects take the multipart copy path under the faults.
	MultipartThreshold string `json:"multipart_threshold"`
	PartSize           string `json:"part_size"`
	// CopyFirst is which copy paths the fleet takes (CopyFirstOff, On,
	// Mixed): careful workers run with MultipartThreshold, which turns the
	// worker's copy-first path off (it needs the 5 GiB default); copy-first
	// workers run at the default threshold, so they copy each object before
	// reading its source (the shaped objects in one CopyObject). Mixed runs
	// both side by side, at least half of the fleet careful.
	CopyFirst string `json:"copy_first"`
	// LegacyRewrites lets the application rewrite legacy keys in place
	// (appsim.OpRewriteInPlace: an application version from before Phase 1)
	// and aim half of its rewrites at photos a worker holds. Off by default:
	// Phase 1 never writes a legacy key (docs/guarantees.md), and with it on
	// the soak can find F12 (docs/soak-findings.md), fixed for the careful
	// path, open for copies made first; on for the teeth runs of the
	// copy-first proof and the destination guard (docs/soak.md).
	LegacyRewrites bool `json:"legacy_rewrites"`
	// AppDirectOnly keeps every application client off the S3 fault proxy
	// (the soak before issue 18 item 5); by default half of them, chosen by
	// the seed, go through it (appsim/proxied.go).
	AppDirectOnly bool `json:"app_direct_only,omitempty"`

	App appsim.Config `json:"app"`

	// Worker fleet: processes between MinWorkers and MaxWorkers.
	MinWorkers        int           `json:"min_workers"`
	MaxWorkers        int           `json:"max_workers"`
	WorkerConcurrency int           `json:"worker_concurrency"`
	RestartDelay      time.Duration `json:"restart_delay"`
	// InitialRate is the fleet throttle set when the migration starts, so the
	// backfill spans the run instead of finishing before the faults begin.
	InitialRate float64 `json:"initial_rate"`
	// CleanupGrace is the --grace of the concurrent cleanups.
	CleanupGrace time.Duration `json:"cleanup_grace"`
	// FinalCleanup runs `cleanup --grace 0` once the fleet is idle, before
	// the checks.
	FinalCleanup bool `json:"final_cleanup"`

	S3     faultproxy.Plan `json:"s3"`
	Net    []NetWindow     `json:"net"`
	Events []Event         `json:"events"`
}

// The fleet's copy paths (Config.CopyFirst).
const (
	// CopyFirstOff: every worker careful (--multipart-threshold lowered):
	// each source read and pinned before its copy, large objects in parts.
	CopyFirstOff = "off"
	// CopyFirstOn: every worker at the default multipart threshold, so
	// --copy-first (the default) applies: each object copied before its
	// source is read, the read after the copy proving it.
	CopyFirstOn = "on"
	// CopyFirstMixed: both at once, the careful workers never fewer than
	// the copy-first ones (a fleet of one is careful), so that the
	// multipart path still runs and both paths meet on the same photos
	// (a redelivery taken by the other kind of worker).
	CopyFirstMixed = "mixed"
)

// CopyPaths lists the worker paths a CopyFirst mode starts, in the order
// the fleet prefers them on a tie ("" is taken as mixed).
func CopyPaths(mode string) ([]string, error) {
	switch mode {
	case CopyFirstOff:
		return []string{PathCareful}, nil
	case CopyFirstOn:
		return []string{PathCopyFirst}, nil
	case CopyFirstMixed, "":
		return []string{PathCareful, PathCopyFirst}, nil
	}
	return nil, fmt.Errorf("copy-first mode %q: want %s, %s or %s", mode, CopyFirstOff, CopyFirstOn, CopyFirstMixed)
}

// NetWindow is a TCP fault on Postgres, SQS or S3 for a while.
type NetWindow struct {
	Target  string        `json:"target"` // "postgres", "sqs" or "s3" (in front of the S3 fault proxy)
	Kind    string        `json:"kind"`   // "latency", "resets" or "outage"
	Start   time.Duration `json:"start"`
	End     time.Duration `json:"end"`
	Latency time.Duration `json:"latency,omitempty"`
	Share   float64       `json:"share,omitempty"`
}

// The kinds of events.
const (
	EvSigkill       = "sigkill_worker"
	EvSigterm       = "sigterm_worker"
	EvScale         = "scale"
	EvProducer      = "producer"
	EvProducerKill  = "producer_killed"
	EvPause         = "pause"
	EvResume        = "resume"
	EvThrottle      = "throttle"
	EvThrottleOff   = "throttle_off"
	EvRollback      = "rollback"
	EvCleanup       = "cleanup"
	EvRedrive       = "dlq_redrive"
	EvPauseRollback = "pause_rollback_resume"
	// EvArchivedAssign gives N archived ownerless photos an owner with
	// `migratectl archived assign` (WithArchivedOps).
	EvArchivedAssign = "archived_assign"
	// EvArchivedPurge runs `migratectl archived purge --yes` on the photos
	// archived so far (WithArchivedOps).
	EvArchivedPurge = "archived_purge"
)

// Event is one process fault or operator action at a time in the run.
type Event struct {
	At   time.Duration `json:"at"`
	Kind string        `json:"kind"`
	// N is the worker count (scale), photos to roll back (rollback), or the
	// milliseconds after which the producer is killed (producer_killed).
	N int `json:"n,omitempty"`
	// Rate is the throttle (photos/s).
	Rate float64 `json:"rate,omitempty"`
	// DeleteNew asks rollback for --delete-new.
	DeleteNew bool `json:"delete_new,omitempty"`
	// Index picks the worker (sigkill/sigterm) among those running.
	Index int `json:"index,omitempty"`
}

// Generate builds the run's configuration from its seed and duration. Every
// window, rate and event time comes from one generator seeded with seed.
func Generate(seed uint64, d time.Duration) Config {
	r := rand.New(rand.NewPCG(seed, 0x736f616b))
	c := Config{
		Seed:              seed,
		Duration:          d,
		Baseline:          min(max(d/12, 5*time.Second), time.Minute),
		FinishTimeout:     max(5*time.Minute, d/2),
		Photos:            400 + int(d.Seconds()*4),
		Problems:          1 + int(d/(15*time.Minute)),
		MinWorkers:        1,
		MaxWorkers:        4,
		WorkerConcurrency: 4,
		RestartDelay:      2 * time.Second,
		CleanupGrace:      5 * time.Second,
		FinalCleanup:      true,
		App: appsim.Config{
			Seed: seed, Readers: 3, Writers: 3, ReadRate: 30, WriteRate: 6,
			// Two late legacy rows with a large object (one original, one
			// animation), whatever the duration: a handful, not hundreds.
			LargeWrites: 2,
		},
		// Four seeded (two large originals, two large animations): with the
		// two late ones, about 50 MiB in all.
		Shaped:             4,
		MultipartThreshold: "5MiB",
		PartSize:           "5MiB",
		CopyFirst:          CopyFirstMixed,
	}
	c.InitialRate = float64(c.Photos) / (0.7 * d.Seconds())
	at := func(lo, hi float64) time.Duration { // a time between lo and hi of the run
		return time.Duration((lo + r.Float64()*(hi-lo)) * float64(d))
	}
	span := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }

	// S3: a low background of every fault, and windows of each that are
	// much worse: a throttling storm, a burst of 500s, resets, slowness.
	c.S3.Base = faultproxy.Rates{
		SlowDown: 0.01, InternalError: 0.005, ResetBefore: 0.003, ResetAfter: 0.003, ErrorIn200: 0.02,
		Latency: 0.05, LatencyMin: 5 * time.Millisecond, LatencyMax: 50 * time.Millisecond,
	}
	windows := 1 + int(d/(2*time.Minute))
	for i := range windows {
		_ = i
		w := span(d/20, d/8)
		s := at(0.05, 0.85)
		c.S3.Windows = append(c.S3.Windows,
			faultproxy.Window{Name: "slowdown storm", Start: s, End: s + w, Rates: faultproxy.Rates{SlowDown: 0.3}},
		)
		s = at(0.05, 0.85)
		c.S3.Windows = append(c.S3.Windows,
			faultproxy.Window{Name: "internal errors", Start: s, End: s + w, Rates: faultproxy.Rates{InternalError: 0.15, ErrorIn200: 0.3}},
		)
		s = at(0.05, 0.85)
		c.S3.Windows = append(c.S3.Windows,
			faultproxy.Window{Name: "resets", Start: s, End: s + w, Rates: faultproxy.Rates{ResetBefore: 0.05, ResetAfter: 0.05}},
		)
		s = at(0.05, 0.85)
		c.S3.Windows = append(c.S3.Windows,
			faultproxy.Window{Name: "slow", Start: s, End: s + w, Rates: faultproxy.Rates{Latency: 0.8, LatencyMin: 100 * time.Millisecond, LatencyMax: 600 * time.Millisecond}},
		)
	}

	// Postgres and SQS: latency, resets, and outages (a few minutes in long
	// runs, seconds in short ones).
	// Windows of latency and resets as often as the S3 windows; outages about
	// once per ten minutes of run (two in a short run), so that the dependency
	// is down for a few minutes in a long run, not most of the time. (Every
	// window is drawn either way, so short runs keep their schedules.)
	outage := span(min(d/12, 3*time.Minute)/2, min(d/12, 3*time.Minute))
	outages := min(windows, max(2, 1+int(d/(10*time.Minute))))
	for _, target := range []string{"postgres", "sqs"} {
		for i := range windows {
			s := at(0.05, 0.8)
			c.Net = append(c.Net, NetWindow{Target: target, Kind: "latency", Start: s, End: s + span(d/20, d/8), Latency: span(20*time.Millisecond, 150*time.Millisecond)})
			s = at(0.05, 0.8)
			c.Net = append(c.Net, NetWindow{Target: target, Kind: "resets", Start: s, End: s + span(d/30, d/12), Share: 0.1 + 0.2*r.Float64()})
			s = at(0.1, 0.8)
			if i < outages {
				c.Net = append(c.Net, NetWindow{Target: target, Kind: "outage", Start: s, End: s + outage})
			}
		}
	}

	// Processes: the producer at the start (killed shortly after and
	// resumed), again later to pick up late legacy rows; workers killed,
	// stopped and rescaled throughout.
	c.Events = append(c.Events,
		Event{At: 0, Kind: EvProducerKill, N: 50 + r.IntN(400)},
		Event{At: 3 * time.Second, Kind: EvProducer},
		Event{At: 0, Kind: EvThrottle, Rate: c.InitialRate},
	)
	// Later producer runs pick up late legacy rows and rolled-back photos;
	// they start new runs, which re-enqueue every legacy photo and so would
	// also heal a lost message. They stay in the first half, so that a
	// message lost in the second half is still lost when the fleet goes idle
	// (end_state checks that before the operator's final producer run).
	for _, f := range []float64{0.25, 0.45} {
		c.Events = append(c.Events, Event{At: at(f-0.05, f+0.05), Kind: EvProducer})
	}
	every := func(mean time.Duration, fn func(t time.Duration)) {
		for t := span(mean/2, mean*3/2); t < d*9/10; t += span(mean/2, mean*3/2) {
			fn(t)
		}
	}
	clamp := func(x, lo, hi time.Duration) time.Duration { return min(max(x, lo), hi) }
	every(clamp(d/12, 8*time.Second, 30*time.Second), func(t time.Duration) {
		kind := EvSigkill
		if r.IntN(3) == 0 {
			kind = EvSigterm
		}
		c.Events = append(c.Events, Event{At: t, Kind: kind, Index: r.IntN(16)})
	})
	every(clamp(d/6, 15*time.Second, 60*time.Second), func(t time.Duration) {
		c.Events = append(c.Events, Event{At: t, Kind: EvScale, N: c.MinWorkers + r.IntN(c.MaxWorkers-c.MinWorkers+1)})
	})
	// Operators.
	every(clamp(d/5, 20*time.Second, 90*time.Second), func(t time.Duration) {
		c.Events = append(c.Events, Event{At: t, Kind: EvPause}, Event{At: t + span(2*time.Second, 8*time.Second), Kind: EvResume})
	})
	every(clamp(d/5, 25*time.Second, 2*time.Minute), func(t time.Duration) {
		c.Events = append(c.Events, Event{At: t, Kind: EvThrottleOff}, Event{At: t + span(3*time.Second, 10*time.Second), Kind: EvThrottle, Rate: c.InitialRate * (0.5 + r.Float64())})
	})
	every(clamp(d/5, 20*time.Second, 90*time.Second), func(t time.Duration) {
		kind := EvRollback
		if r.IntN(2) == 0 {
			kind = EvPauseRollback
		}
		c.Events = append(c.Events, Event{At: t, Kind: kind, N: 1 + r.IntN(4), DeleteNew: r.IntN(3) == 0})
	})
	every(clamp(d/4, 25*time.Second, 2*time.Minute), func(t time.Duration) {
		c.Events = append(c.Events, Event{At: t, Kind: EvCleanup})
	})
	every(clamp(d/4, 30*time.Second, 2*time.Minute), func(t time.Duration) {
		c.Events = append(c.Events, Event{At: t, Kind: EvRedrive})
	})
	sort.SliceStable(c.Events, func(i, j int) bool { return c.Events[i].At < c.Events[j].At })

	// S3 outages, drawn last so that the draws above (and so the schedules
	// of earlier seeds) stay as they were: S3 refuses connections for a
	// while (a TCP outage of the proxy in front of the S3 fault proxy), and,
	// at another time, answers every request 503 SlowDown. Neither may
	// dead-letter anything (failure_history).
	s := at(0.1, 0.6)
	c.Net = append(c.Net, NetWindow{Target: "s3", Kind: "outage", Start: s, End: s + outage})
	s = at(0.1, 0.6)
	c.S3.Windows = append(c.S3.Windows, faultproxy.Window{Name: S3OutageWindow, Start: s, End: s + outage, Rates: faultproxy.Rates{SlowDown: 1}})
	return c
}

// S3OutageWindow names the S3 fault window in which every request is
// answered 503 SlowDown.
const S3OutageWindow = "outage (every request 503)"

// WithS3Outage returns c with its two S3 outages (connections refused, and
// every request 503) each d long, in place of the generated ones (at most
// three minutes): the soak's -soak.s3-outage, which shows that an outage of
// many minutes dead-letters nothing. It changes those two windows only (no
// draw of the seeded generator), so the rest of the seed's schedule stays
// as Generate made it.
//
// The two are laid end to end, the 503s first, as one outage of S3 inside
// the middle of the run (from a tenth to nine tenths of it, so that the
// fleet is busy when it begins and has time to work again before the
// finish): S3 answers nothing but 503 for d, then refuses connections for
// d. When 2d does not fit there, they overlap just enough to fit. Since
// the refusal is in front of the fault proxy, no request reaches the 503s
// during the overlap: S3 is then down for the whole middle span without a
// break, refusing connections for the last d of it and answering 503 only
// for what comes before (span - d). The outage starts where the earlier of
// the two generated ones did, moved earlier if the span would not fit.
//
// The finish gets d more time to drain: the fleet migrated nothing during
// the outage, so its backlog is left to the finish.
func (c Config) WithS3Outage(d time.Duration) (Config, error) {
	lo, hi := c.Duration/10, c.Duration*9/10
	if d <= 0 || d > hi-lo {
		return c, fmt.Errorf("an S3 outage of %s: want more than 0 and at most %s in a run of %s (it lies between a tenth and nine tenths of the run)", d, hi-lo, c.Duration)
	}
	net := append([]NetWindow(nil), c.Net...)
	windows := append([]faultproxy.Window(nil), c.S3.Windows...)
	refused, all503 := -1, -1
	for i, w := range net {
		if w.Target == "s3" && w.Kind == "outage" {
			refused = i
		}
	}
	for i, w := range windows {
		if w.Name == S3OutageWindow {
			all503 = i
		}
	}
	if refused < 0 || all503 < 0 {
		return c, errors.New("the schedule has no S3 outage to lengthen")
	}
	span := min(2*d, hi-lo)
	start := max(lo, min(net[refused].Start, windows[all503].Start, hi-span))
	windows[all503].Start, windows[all503].End = start, start+d
	net[refused].Start, net[refused].End = start+span-d, start+span
	c.Net, c.S3.Windows = net, windows
	c.FinishTimeout += d
	return c, nil
}

// S3PartialOutageWindow names the S3 fault window of a partial outage
// (WithS3PartialOutage): every write fails while every read answers.
const S3PartialOutageWindow = "partial outage (every write 503 or reset, reads answer)"

// PartialOutageOps are the operations a partial S3 outage fails: every one
// that writes an object. Reads (HEAD, GET, LIST), deletes and the bucket's
// configuration keep answering.
var PartialOutageOps = []faultproxy.Op{
	faultproxy.OpCopyObject, faultproxy.OpUploadPartCopy, faultproxy.OpPutObject, faultproxy.OpPostObject,
	faultproxy.OpCreateMultipartUpload, faultproxy.OpUploadPart, faultproxy.OpCompleteMultipartUpload,
}

// WithS3PartialOutage returns c with one more S3 fault window, d long,
// centred between a tenth and nine tenths of the run: every write
// (PartialOutageOps) fails, half of them with 503 SlowDown and half with a
// reset connection, while every read answers. It is the soak's
// -soak.s3-partial-outage (issue 18): a worker gate that waited for S3 by
// reading it would take its photos again at every probe until they were
// dead-lettered as broken (failure_history). It adds a window only (no draw
// of the seeded generator, no window moved), so the rest of the seed's
// schedule stays as Generate (and WithS3Outage, applied before or after)
// made it. The finish gets d more time: the fleet copied nothing meanwhile.
func (c Config) WithS3PartialOutage(d time.Duration) (Config, error) {
	lo, hi := c.Duration/10, c.Duration*9/10
	if d <= 0 || d > hi-lo {
		return c, fmt.Errorf("a partial S3 outage of %s: want more than 0 and at most %s in a run of %s (it lies between a tenth and nine tenths of the run)", d, hi-lo, c.Duration)
	}
	start := lo + (hi-lo-d)/2
	windows := append(append([]faultproxy.Window(nil), c.S3.Windows...), faultproxy.Window{
		Name: S3PartialOutageWindow, Start: start, End: start + d,
		Rates: faultproxy.Rates{SlowDown: 0.5, ResetBefore: 0.5, Ops: append([]faultproxy.Op(nil), PartialOutageOps...)},
	})
	c.S3.Windows = windows
	c.FinishTimeout += d
	return c, nil
}

// WithArchivedOps returns c with the operator's review of the archived
// photos added to its events: two `archived assign` runs (at 45% and 65% of
// the run, N photos each) and one `archived purge` (at 80%), so that photos
// the workers archived are given an owner and migrated, and the rest have
// their legacy objects purged, while the fleet and the application go on.
// It is the soak's -soak.archived-ops. It adds events only, at fixed
// fractions of the run (no draw of the seeded generator, nothing moved), so
// the rest of the seed's schedule stays as Generate made it.
func (c Config) WithArchivedOps() Config {
	events := append([]Event(nil), c.Events...)
	d := c.Duration
	events = append(events,
		Event{At: d * 45 / 100, Kind: EvArchivedAssign, N: 3},
		Event{At: d * 65 / 100, Kind: EvArchivedAssign, N: 3},
		Event{At: d * 80 / 100, Kind: EvArchivedPurge},
	)
	sort.SliceStable(events, func(i, j int) bool { return events[i].At < events[j].At })
	c.Events = events
	return c
}

// Describe is a short account of the schedule.
func (c Config) Describe() string {
	kinds := map[string]int{}
	for _, e := range c.Events {
		kinds[e.Kind]++
	}
	rw := ""
	if c.LegacyRewrites {
		rw = ", legacy rewrites in place"
	}
	return fmt.Sprintf("seed %d, %s, %d photos, copy-first %s%s, %d S3 windows, %d TCP windows, events %v", c.Seed, c.Duration, c.Photos, c.CopyFirst, rw, len(c.S3.Windows), len(c.Net), kinds)
}
