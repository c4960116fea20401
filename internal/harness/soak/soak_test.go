package soak_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/harness/soak"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
)

var (
	duration  = flag.Duration("soak.duration", 2*time.Minute, "how long the migration runs under faults (the baseline and the finish come on top)")
	seedFlag  = flag.Uint64("soak.seed", 0, "seed of the schedule and of the application's choices (0: pick one and print it)")
	jsonOut   = flag.String("soak.json", "", "also write the report as JSON to this file")
	dirFlag   = flag.String("soak.dir", "", "directory for the processes' logs and the report (default: a new one under the temp dir, kept)")
	photos    = flag.Int("soak.photos", 0, "seeded legacy photos (default: 400 + 4 per second of -soak.duration)")
	legacyRW  = flag.Bool("soak.legacy-rewrites", false, "the application also rewrites legacy keys in place (an app version from before Phase 1) and aims half its rewrites at photos in flight: the teeth runs of docs/soak.md; can find F12, still open for copy-first workers (docs/soak-findings.md)")
	s3Outage  = flag.Duration("soak.s3-outage", 0, "make each of the two S3 outages (connections refused, every request 503) this long, laid end to end in the middle of the run, overlapping if they must (default 0: as generated, at most 3 minutes; see soak.Config.WithS3Outage)")
	s3Partial = flag.Duration("soak.s3-partial-outage", 0, "add a partial S3 outage this long in the middle of the run: every write (CopyObject, UploadPartCopy, PutObject, the multipart calls) fails, half 503 SlowDown and half a reset connection, while reads answer (default 0: none; see soak.Config.WithS3PartialOutage)")
	archOps   = flag.Bool("soak.archived-ops", true, "the operator also reviews the archived photos: two `migratectl archived assign` runs (3 photos each, at 45% and 65% of the run) and one `archived purge --older-than 1s --yes` (at 80%) (default on since F14 and F15 were fixed and soaked, docs/soak.md; see soak.Config.WithArchivedOps)")
	listing   = flag.Bool("soak.list-photos", true, "one reader turn in ten lists a random user's photos (its legacy rows, then ListPhotos) instead of reading one, judged as a read (appsim/listing.go); default on since soaked (docs/soak.md); -soak.list-photos=false for the reads before")
	appDirect = flag.Bool("soak.app-direct-only", false, "keep every application client off the S3 fault proxy (by default half of them, chosen by the seed, go through it and retry as an application does: appsim/proxied.go)")
	copyMode  = flag.String("soak.copy-first", soak.CopyFirstMixed, "the workers' copy paths: mixed (half the fleet or more careful, with the multipart threshold lowered; the rest at the default threshold, copy first), on (every worker copy first) or off (every worker careful)")
)

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "keymigrate-soak-bin-")
	if err != nil {
		panic(err)
	}
	out, err := exec.Command("go", "build", "-o", dir, "../../../cmd/...").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server names the S3 implementation the stack runs.
func server() string {
	if s := os.Getenv("KEYMIGRATE_S3"); s != "" {
		return s
	}
	return "versitygw"
}

// TestSoak is the soak: the whole system under a live application and
// failing infrastructure, then the invariants. Without flags it is the
// two-minute run `make test` includes; `make soak` passes the flags.
func TestSoak(t *testing.T) {
	env := testenv.New(t, testenv.Options{MaxReceiveCount: 5})
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()%1_000_000) + 1
	}
	cfg := soak.Generate(seed, *duration)
	_, err := soak.CopyPaths(*copyMode)
	require.NoError(t, err, "-soak.copy-first")
	cfg.CopyFirst = *copyMode
	cfg.LegacyRewrites = *legacyRW
	cfg.AppDirectOnly = *appDirect
	if *listing {
		cfg.App.ListOneIn = 10
	}
	if *photos > 0 {
		cfg.Photos = *photos
		cfg.InitialRate = float64(cfg.Photos) / (0.7 * cfg.Duration.Seconds())
	}
	if *s3Outage > 0 {
		cfg, err = cfg.WithS3Outage(*s3Outage)
		require.NoError(t, err, "-soak.s3-outage")
	}
	if *s3Partial > 0 {
		cfg, err = cfg.WithS3PartialOutage(*s3Partial)
		require.NoError(t, err, "-soak.s3-partial-outage")
	}
	if *archOps {
		cfg = cfg.WithArchivedOps()
	}
	dir := *dirFlag
	if dir == "" {
		dir, err = os.MkdirTemp("", fmt.Sprintf("keymigrate-soak-%d-", seed))
		require.NoError(t, err)
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	replay := fmt.Sprintf("make soak SOAK_SEED=%d SOAK_DURATION=%s SOAK_COPY_FIRST=%s KEYMIGRATE_S3=%s", seed, *duration, cfg.CopyFirst, server())
	args := fmt.Sprintf("-soak.seed=%d -soak.duration=%s -soak.copy-first=%s", seed, *duration, cfg.CopyFirst)
	if *s3Outage > 0 {
		replay += fmt.Sprintf(" SOAK_S3_OUTAGE=%s", *s3Outage)
		args += fmt.Sprintf(" -soak.s3-outage=%s", *s3Outage)
	}
	if *s3Partial > 0 {
		replay += fmt.Sprintf(" SOAK_S3_PARTIAL_OUTAGE=%s", *s3Partial)
		args += fmt.Sprintf(" -soak.s3-partial-outage=%s", *s3Partial)
	}
	if cfg.LegacyRewrites {
		replay += " SOAK_LEGACY_REWRITES=true"
		args += " -soak.legacy-rewrites"
	}
	// Listings and the archived review are on by default: a replay
	// names each only when it is not the default.
	if !*archOps {
		replay += " SOAK_ARCHIVED_OPS=false"
		args += " -soak.archived-ops=false"
	}
	if !*listing {
		replay += " SOAK_LIST_PHOTOS=false"
		args += " -soak.list-photos=false"
	}
	if *appDirect {
		replay += " SOAK_APP_DIRECT_ONLY=true"
		args += " -soak.app-direct-only"
	}
	t.Logf("soak seed %d (replay: %s); logs in %s", seed, replay, dir)

	// The timeline goes to the test's log as it happens with -v (make soak).
	// Without it (make test, CI) it is held back and printed after the
	// violations and the report, so that an excerpt of a failed run's
	// output that keeps only its head shows what went wrong first.
	var (
		timelineMu sync.Mutex
		timeline   []string
	)
	logf := func(format string, args ...any) {
		if testing.Verbose() {
			t.Logf(format, args...)
			return
		}
		timelineMu.Lock()
		defer timelineMu.Unlock()
		timeline = append(timeline, fmt.Sprintf(format, args...))
	}
	rep, err := soak.Run(context.Background(), cfg, soak.Options{
		Env: env, BinDir: binDir, Dir: dir, Server: server(), Logf: logf,
	})
	defer func() {
		timelineMu.Lock()
		defer timelineMu.Unlock()
		if len(timeline) > 0 {
			_ = os.WriteFile(filepath.Join(dir, "timeline.log"), []byte(strings.Join(timeline, "\n")+"\n"), 0o644)
			t.Logf("soak timeline (also in %s):\n%s", filepath.Join(dir, "timeline.log"), strings.Join(timeline, "\n"))
		}
	}()
	if rep != nil {
		rep.Replay = replay
		if !rep.OK() {
			var v bytes.Buffer
			rep.Violations(&v)
			t.Logf("violations:\n%s", v.String())
			defer logEvidence(t, env, dir, rep)
		}
		var table bytes.Buffer
		rep.Table(&table)
		t.Logf("soak report:\n%s", table.String())
		_ = os.WriteFile(filepath.Join(dir, "report.md"), table.Bytes(), 0o644)
		f, ferr := os.Create(filepath.Join(dir, "report.json"))
		if ferr == nil {
			_ = rep.JSON(f)
			f.Close()
		}
		if *jsonOut != "" {
			f, ferr := os.Create(*jsonOut)
			require.NoError(t, ferr)
			require.NoError(t, rep.JSON(f))
			require.NoError(t, f.Close())
		}
	}
	require.NoError(t, err, "the harness failed (seed %d; replay: %s)", seed, replay)
	if !rep.OK() {
		t.Errorf("%d invariant violations (seed %d). Replay the schedule with:\n  %s\nor\n  go test ./internal/harness/soak -run TestSoak -count=1 -timeout 0 -args %s\nLogs and report.json: %s",
			rep.Count, seed, replay, args, dir)
	}
}

func TestGenerateReplaysTheSchedule(t *testing.T) {
	t.Parallel()
	a, b := soak.Generate(42, 2*time.Minute), soak.Generate(42, 2*time.Minute)
	require.Equal(t, a, b, "the same seed gives the same schedule")
	c := soak.Generate(43, 2*time.Minute)
	require.NotEqual(t, a.Events, c.Events)
	long := soak.Generate(42, 30*time.Minute)
	require.Greater(t, len(long.Events), len(a.Events))
	kinds := map[string]bool{}
	for _, e := range long.Events {
		require.Less(t, e.At, long.Duration+time.Minute, "%+v", e)
		kinds[e.Kind] = true
	}
	for _, k := range []string{soak.EvSigkill, soak.EvScale, soak.EvProducer, soak.EvPause, soak.EvResume, soak.EvThrottle, soak.EvCleanup, soak.EvRedrive} {
		require.True(t, kinds[k], "a 30-minute run does %s", k)
	}
	targets := map[string]bool{}
	for _, w := range long.Net {
		targets[w.Target+"/"+w.Kind] = true
		require.Less(t, w.Start, w.End)
	}
	for _, k := range []string{"postgres/outage", "sqs/outage", "s3/outage", "postgres/latency", "sqs/resets"} {
		require.True(t, targets[k], k)
	}
	// The two-minute run (the CI soak) has an S3 outage of each kind:
	// connections refused, and every request 503.
	refused, all503 := false, false
	for _, w := range a.Net {
		refused = refused || (w.Target == "s3" && w.Kind == "outage" && w.End > w.Start)
	}
	for _, w := range a.S3.Windows {
		all503 = all503 || (w.Rates.SlowDown == 1 && w.End > w.Start)
	}
	require.True(t, refused, "the two-minute schedule refuses S3 connections for a while")
	require.True(t, all503, "the two-minute schedule answers every S3 request 503 for a while")
	// It copies objects part by part too: shaped objects above the workers'
	// lowered multipart threshold (the run itself checks that a multipart
	// copy was compared).
	require.Positive(t, a.Shaped, "the two-minute schedule seeds objects above the multipart threshold")
	threshold, err := humanize.ParseBytes(a.MultipartThreshold)
	require.NoError(t, err)
	require.Less(t, threshold, uint64(appsim.LargeMin), "the workers' multipart threshold is below the shaped objects' size")
	// Its fleet is mixed: careful workers (the lowered threshold above)
	// beside copy-first ones (the default threshold), so both paths run.
	require.Equal(t, soak.CopyFirstMixed, a.CopyFirst)
	paths, err := soak.CopyPaths(a.CopyFirst)
	require.NoError(t, err)
	require.Equal(t, []string{soak.PathCareful, soak.PathCopyFirst}, paths)
	require.True(t, strings.Contains(a.Describe(), "seed 42"))
}

// -soak.s3-outage D: both S3 outages (connections refused, every request
// 503) last D, inside the run, and nothing else of the seed's schedule
// moves.
func TestWithS3OutageLengthensOnlyTheS3Outages(t *testing.T) {
	t.Parallel()
	s3Outages := func(c soak.Config) (refused soak.NetWindow, all503 faultproxy.Window) {
		t.Helper()
		n := 0
		for _, w := range c.Net {
			if w.Target == "s3" && w.Kind == "outage" {
				refused = w
				n++
			}
		}
		for _, w := range c.S3.Windows {
			if w.Rates.SlowDown == 1 {
				all503 = w
				n++
			}
		}
		require.Equal(t, 2, n, "one S3 outage of each kind")
		return refused, all503
	}
	for _, tc := range []struct {
		run, outage time.Duration
		endToEnd    bool
	}{
		{14 * time.Minute, 10 * time.Minute, false}, // the run in docs/soak.md: they overlap
		{30 * time.Minute, 10 * time.Minute, true},  // room for both, one after the other
		{2 * time.Minute, 90 * time.Second, false},
	} {
		for _, seed := range []uint64{42, 20261127, 7} {
			gen := soak.Generate(seed, tc.run)
			c, err := gen.WithS3Outage(tc.outage)
			require.NoError(t, err)
			refused, all503 := s3Outages(c)
			for _, w := range []struct{ start, end time.Duration }{{refused.Start, refused.End}, {all503.Start, all503.End}} {
				require.Equal(t, tc.outage, w.end-w.start, "seed %d, %s in %s: each outage lasts the flag's length", seed, tc.outage, tc.run)
				require.GreaterOrEqual(t, w.start, tc.run/10, "seed %d: starts once the fleet is at work", seed)
				require.LessOrEqual(t, w.end, tc.run*9/10, "seed %d: ends with time left before the finish", seed)
			}
			// The 503s come first, the refusal after, without a break
			// between them: one outage of S3 at least D long.
			require.LessOrEqual(t, all503.Start, refused.Start)
			require.GreaterOrEqual(t, all503.End, refused.Start, "no break between the two")
			require.Equal(t, tc.endToEnd, all503.End == refused.Start, "end to end when both fit, else overlapping")
			require.Equal(t, gen.FinishTimeout+tc.outage, c.FinishTimeout, "the finish has the outage's backlog to drain")

			// Nothing else moves, and the generated schedule is untouched.
			again := soak.Generate(seed, tc.run)
			require.Equal(t, again, gen, "WithS3Outage leaves the config it was given alone")
			require.Equal(t, again.Events, c.Events)
			require.Equal(t, len(again.Net), len(c.Net))
			for i := range c.Net {
				if c.Net[i].Target != "s3" {
					require.Equal(t, again.Net[i], c.Net[i])
				}
			}
			for i := range c.S3.Windows {
				if c.S3.Windows[i].Rates.SlowDown != 1 {
					require.Equal(t, again.S3.Windows[i], c.S3.Windows[i])
				}
			}
		}
	}
	_, err := soak.Generate(42, 14*time.Minute).WithS3Outage(12 * time.Minute)
	require.Error(t, err, "an outage longer than the middle of the run")
}

// -soak.s3-partial-outage D: one more S3 window, D long inside the run, in
// which every write fails and every read answers; nothing of the seed's
// schedule moves, with or without -soak.s3-outage.
func TestWithS3PartialOutageAddsOnlyItsWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ run, outage time.Duration }{
		{2 * time.Minute, 40 * time.Second},
		{14 * time.Minute, 10 * time.Minute},
		{30 * time.Minute, 24 * time.Minute},
	} {
		for _, seed := range []uint64{42, 20261127, 7} {
			for _, withOutage := range []bool{false, true} {
				gen := soak.Generate(seed, tc.run)
				base := gen
				if withOutage {
					var err error
					base, err = gen.WithS3Outage(tc.run / 4)
					require.NoError(t, err)
				}
				c, err := base.WithS3PartialOutage(tc.outage)
				require.NoError(t, err)
				require.Len(t, c.S3.Windows, len(base.S3.Windows)+1, "seed %d: one window more", seed)
				require.Equal(t, base.S3.Windows, c.S3.Windows[:len(base.S3.Windows)], "seed %d: no other window moves", seed)
				w := c.S3.Windows[len(c.S3.Windows)-1]
				require.Equal(t, soak.S3PartialOutageWindow, w.Name)
				require.Equal(t, tc.outage, w.End-w.Start, "seed %d, %s in %s: it lasts the flag's length", seed, tc.outage, tc.run)
				require.GreaterOrEqual(t, w.Start, tc.run/10, "seed %d: starts once the fleet is at work", seed)
				require.LessOrEqual(t, w.End, tc.run*9/10, "seed %d: ends with time left before the finish", seed)
				require.Equal(t, 1.0, w.Rates.SlowDown+w.Rates.ResetBefore, "every write fails")
				require.ElementsMatch(t, soak.PartialOutageOps, w.Rates.Ops)
				for _, op := range []faultproxy.Op{faultproxy.OpHeadObject, faultproxy.OpGetObject, faultproxy.OpListObjectsV2} {
					require.NotContains(t, w.Rates.Ops, op, "reads answer")
				}
				require.Equal(t, base.FinishTimeout+tc.outage, c.FinishTimeout, "the finish has the outage's backlog to drain")
				require.Equal(t, base.Events, c.Events)
				require.Equal(t, base.Net, c.Net)
				require.Equal(t, soak.Generate(seed, tc.run), gen, "the generated config is left alone")
			}
		}
	}
	_, err := soak.Generate(42, 2*time.Minute).WithS3PartialOutage(2 * time.Minute)
	require.Error(t, err, "an outage longer than the middle of the run")
}

// -soak.archived-ops: two archived assign runs and one archived purge, added
// to the seed's events; nothing else of the schedule moves.
func TestWithArchivedOpsAddsOnlyItsEvents(t *testing.T) {
	t.Parallel()
	for _, run := range []time.Duration{2 * time.Minute, 30 * time.Minute} {
		for _, seed := range []uint64{42, 20261127, 7} {
			base := soak.Generate(seed, run)
			require.Equal(t, base, soak.Generate(seed, run), "seed %d: the generator alone decides the schedule", seed)
			for _, e := range base.Events {
				require.NotContains(t, []string{soak.EvArchivedAssign, soak.EvArchivedPurge}, e.Kind, "seed %d: off by default", seed)
			}
			c := base.WithArchivedOps()
			require.Len(t, c.Events, len(base.Events)+3, "seed %d: three events more", seed)
			var rest, added []soak.Event
			for _, e := range c.Events {
				if e.Kind == soak.EvArchivedAssign || e.Kind == soak.EvArchivedPurge {
					added = append(added, e)
					continue
				}
				rest = append(rest, e)
			}
			require.Equal(t, base.Events, rest, "seed %d: no other event moves", seed)
			require.Equal(t, []soak.Event{
				{At: run * 45 / 100, Kind: soak.EvArchivedAssign, N: 3},
				{At: run * 65 / 100, Kind: soak.EvArchivedAssign, N: 3},
				{At: run * 80 / 100, Kind: soak.EvArchivedPurge},
			}, added, "seed %d", seed)
			for i := 1; i < len(c.Events); i++ {
				require.LessOrEqual(t, c.Events[i-1].At, c.Events[i].At, "seed %d: in time order", seed)
			}
			require.Equal(t, base.S3, c.S3)
			require.Equal(t, base.Net, c.Net)
			require.Equal(t, base.FinishTimeout, c.FinishTimeout)
			require.Len(t, base.Events, len(soak.Generate(seed, run).Events), "seed %d: the base is not changed", seed)
		}
	}
}

// logEvidence writes what the database holds about each violation's photo
// and key to evidence.txt in the run's directory, before the test drops the
// database, and logs its first lines last (CI keeps only an excerpt of the
// output and none of the directory).
func logEvidence(t *testing.T, env *testenv.Env, dir string, rep *soak.Report) {
	var vs []soak.Violation
	for _, inv := range soak.Invariants {
		vs = append(vs, rep.Samples[inv]...)
	}
	var b bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := soak.Evidence(ctx, env.Store.Pool(), &b, vs); err != nil {
		t.Logf("evidence: %v", err)
	}
	path := filepath.Join(dir, "evidence.txt")
	_ = os.WriteFile(path, b.Bytes(), 0o644)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) > 80 {
		lines = append(lines[:80], fmt.Sprintf("… %d lines more in %s", len(lines)-80, path))
	}
	t.Logf("the database's rows for the violations' photos and keys (all in %s):\n%s", path, strings.Join(lines, "\n"))
}
