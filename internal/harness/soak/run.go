package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/harness/netfault"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

// Runner runs one soak.
type Runner struct {
	cfg    Config
	env    *testenv.Env
	dir    string
	server string
	logf   func(format string, args ...any)

	fp    *faultproxy.Proxy
	nf    *netfault.Net
	sim   *appsim.Sim
	procs *Procs
	fleet *Fleet

	t0 time.Time // migration start

	mu sync.Mutex
	// purgedKeys and purgedPhotos are what `archived purge` reported
	// deleting and handling (archivedops.go).
	purgedKeys, purgedPhotos map[string]bool
	// purgesToRerun are the starts of the scheduled purges that failed or
	// were killed: the finish runs each again.
	purgesToRerun []time.Time
	operator      map[string]*Count
	rolledBack    map[string]time.Time // rolled back since the last producer start
	producer      *proc
	violations    []Violation
	notes         []string
	// dlqSeen is what was in the DLQ before each redrive.
	dlqSeen []dlqEntry
	// copyFirstPossible is the S3 probe's word on copy first (copypaths.go).
	copyFirstPossible bool
	copyCaps          string
	wg                sync.WaitGroup // operator commands in flight

	// resumes are the producer invocations that resumed an unfinished run;
	// lost is what checkLostMessages found at the first drain (lost.go).
	resumes []resumeNote
	lost    LostMessages
	// failedAssigns are the `archived assign` commands that failed
	// (lost.go: their records may never have been sent).
	failedAssigns []assignNote
}

// Count is how often something was done and how often it failed.
type Count struct {
	OK     int    `json:"ok"`
	Failed int    `json:"failed"`
	Last   string `json:"last_error,omitempty"`
}

// Options are what a run needs besides its Config.
type Options struct {
	// Env is the run's isolated database, bucket and queues (testenv.New).
	Env *testenv.Env
	// BinDir holds the built producer, worker and migratectl.
	BinDir string
	// Dir receives the processes' logs and the report.
	Dir string
	// Server names the S3 implementation (versitygw, minio) for the report.
	Server string
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// Run performs the soak described by cfg and returns its report. An error
// means the harness itself could not run; invariant violations are in the
// report.
func Run(ctx context.Context, cfg Config, o Options) (*Report, error) {
	r := &Runner{cfg: cfg, env: o.Env, dir: o.Dir, server: o.Server, logf: o.Logf,
		operator: map[string]*Count{}, rolledBack: map[string]time.Time{}}
	if r.logf == nil {
		r.logf = func(string, ...any) {}
	}
	start := time.Now()
	if err := r.setup(ctx, o.BinDir); err != nil {
		return nil, err
	}
	defer r.nf.Close()
	defer r.fp.Close()
	if err := r.installAudit(ctx); err != nil {
		return nil, err
	}

	r.logf("soak: %s", cfg.Describe())
	// Let the servers settle after seeding, so the baseline measures the
	// application alone, not the seeder's aftermath.
	if err := sleep(ctx, 5*time.Second); err != nil {
		return nil, err
	}
	r.sim.SetPhase("baseline")
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	r.sim.Start(simCtx)
	r.logf("soak: baseline: the application alone for %s", cfg.Baseline)
	if err := sleep(ctx, cfg.Baseline); err != nil {
		return nil, err
	}

	r.logf("soak: migration and faults for %s", cfg.Duration)
	r.sim.SetPhase("migration")
	r.t0 = time.Now()
	r.fp.Begin()
	fleetCtx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	go r.fleet.Run(fleetCtx)
	chaosCtx, stopChaos := context.WithTimeout(ctx, cfg.Duration)
	var chaos sync.WaitGroup
	chaos.Add(2)
	go func() { defer chaos.Done(); r.runNet(chaosCtx) }()
	go func() { defer chaos.Done(); r.runEvents(chaosCtx) }()
	go r.progress(chaosCtx)
	<-chaosCtx.Done()
	stopChaos()
	chaos.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	r.logf("soak: finishing as an operator would")
	finishStart := time.Now()
	if err := r.finish(ctx); err != nil {
		r.note("finish: %v", err)
	}
	stopFleet()
	r.fleet.Stop(40 * time.Second)
	r.rerunFailedPurges(ctx)
	if cfg.FinalCleanup {
		r.operatorRetry(ctx, "final_cleanup", 5*time.Minute, "migratectl", "cleanup", "--grace", "0", "--again")
	}
	r.sim.Stop()
	r.logf("soak: checking the invariants")
	rep := r.report(start, finishStart)
	err := r.check(ctx, rep)
	r.mu.Lock()
	rep.finaliseWith(r.violations)
	r.mu.Unlock()
	if err != nil {
		return rep, fmt.Errorf("checks: %w", err)
	}
	return rep, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// setup starts the proxies, the simulator and its data, and prepares the
// processes' environment.
func (r *Runner) setup(ctx context.Context, binDir string) error {
	var err error
	r.fp, err = faultproxy.New(os.Getenv("AWS_ENDPOINT_URL_S3"), r.cfg.S3, r.cfg.Seed)
	if err != nil {
		return err
	}
	if err := r.fp.Start("127.0.0.1:0"); err != nil {
		return err
	}
	r.nf = netfault.New()
	dbURL, err := url.Parse(r.env.DatabaseURL)
	if err != nil {
		return err
	}
	pgAddr, err := r.nf.Add("postgres", dbURL.Host)
	if err != nil {
		return err
	}
	sqsURL, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_SQS"))
	if err != nil {
		return err
	}
	sqsAddr, err := r.nf.Add("sqs", sqsURL.Host)
	if err != nil {
		return err
	}
	// The processes reach S3 through a TCP proxy in front of the S3 fault
	// proxy, so that an S3 outage can refuse connections.
	fpURL, err := url.Parse(r.fp.URL())
	if err != nil {
		return err
	}
	s3Addr, err := r.nf.Add("s3", fpURL.Host)
	if err != nil {
		return err
	}
	proxied := *dbURL
	proxied.Host = pgAddr
	env := append(r.env.Environ(),
		"DATABASE_URL="+proxied.String(),
		"AWS_ENDPOINT_URL_S3=http://"+s3Addr,
		"AWS_ENDPOINT_URL_SQS=http://"+sqsAddr,
		"KEYMIGRATE_LOG_LEVEL=info",
	)
	r.procs = &Procs{BinDir: binDir, Env: env, Dir: r.dir}
	paths, err := CopyPaths(r.cfg.CopyFirst)
	if err != nil {
		return err
	}
	common := []string{"--concurrency", fmt.Sprint(r.cfg.WorkerConcurrency), "--wait-time", "2s", "--visibility-timeout", "20s",
		"--shutdown-grace", "10s", "--retry-max-elapsed", "10s", "--control-interval", "1s"}
	r.fleet = NewMixedFleet(r.procs, 2, r.cfg.RestartDelay, paths, map[string][]string{
		// The lowered threshold takes the shaped objects part by part, and
		// turns copy-first off (it needs the 5 GiB default).
		PathCareful: append(append([]string(nil), common...),
			"--multipart-threshold", r.cfg.MultipartThreshold, "--part-size", r.cfg.PartSize, "--copy-first=false"),
		// The production defaults: the threshold at 5 GiB, copy first.
		PathCopyFirst: append(append([]string(nil), common...), "--copy-first=true"),
	})

	r.probeCopyFirst(ctx)

	svc, err := storage.New(r.env.S3, r.env.Objects.Bucket(), storage.Options{})
	if err != nil {
		return err
	}
	// Half the application's clients reach S3 as the workers do, through
	// the TCP outage proxy and the fault proxy (appsim/proxied.go), with the
	// SDK's standard retryer; the other half straight, as before.
	proxiedS3 := s3.New(r.env.S3.Options(), func(o *s3.Options) {
		o.BaseEndpoint = aws.String("http://" + s3Addr)
		o.AppID = "keymigrate-appsim"
	})
	proxiedSvc, err := storage.New(proxiedS3, r.env.Objects.Bucket(), storage.Options{})
	if err != nil {
		return err
	}
	app, deps := r.cfg.App, appsim.Deps{Pool: r.env.Store.Pool(), Storage: svc, Objects: r.env.Objects, CopyRecord: r.copyRecord, InFlight: r.inFlight}
	if !r.cfg.AppDirectOnly {
		deps.Proxied = proxiedSvc
	}
	// Owner removals aim at photos in flight (a worker's copies under the
	// owner who goes); the rewrites do only with the legacy rewrites on.
	if app.Aimed == nil {
		app.Aimed = map[appsim.Op]bool{appsim.OpRemoveOwner: true}
	}
	if r.cfg.LegacyRewrites {
		for _, op := range []appsim.Op{appsim.OpRewriteLegacy, appsim.OpRewriteUser, appsim.OpRewriteInPlace} {
			app.Aimed[op] = true
		}
	} else if app.Weights == nil {
		app.Weights = maps.Clone(appsim.WriteOps)
		app.Weights[appsim.OpRewriteInPlace] = 0
	}
	r.sim = appsim.New(app, deps)
	r.logf("soak: seeding %d legacy photos (+%d broken rows of each kind, +%d with large objects and rich headers)", r.cfg.Photos, r.cfg.Problems, r.cfg.Shaped)
	return r.sim.Populate(ctx, appsim.PopulateOptions{Photos: r.cfg.Photos, Problems: r.cfg.Problems, Shaped: r.cfg.Shaped})
}

// runNet applies the TCP fault windows.
func (r *Runner) runNet(ctx context.Context) {
	type edge struct {
		at  time.Duration
		on  bool
		win NetWindow
		i   int
	}
	var edges []edge
	for i, w := range r.cfg.Net {
		edges = append(edges, edge{w.Start, true, w, i}, edge{w.End, false, w, i})
	}
	active := map[int]netfault.Fault{}
	sort.Slice(edges, func(a, b int) bool { return edges[a].at < edges[b].at })
	for _, e := range edges {
		if sleepUntil(ctx, r.t0.Add(e.at)) != nil {
			return
		}
		w := e.win
		var err error
		switch {
		case w.Kind == "outage" && e.on:
			err = r.nf.Down(w.Target)
		case w.Kind == "outage":
			err = r.nf.Up(w.Target)
		case w.Kind == "latency" && e.on:
			active[e.i], err = r.nf.Latency(w.Target, w.Latency, w.Latency/4)
		case w.Kind == "resets" && e.on:
			active[e.i], err = r.nf.Resets(w.Target, w.Share, 500*time.Millisecond)
		default:
			if f, ok := active[e.i]; ok {
				err = r.nf.Remove(f)
				delete(active, e.i)
			}
		}
		state := "ends"
		if e.on {
			state = "begins"
		}
		r.logf("soak: +%s %s %s on %s", time.Since(r.t0).Round(time.Second), w.Kind, state, w.Target)
		if err != nil {
			r.note("net fault %s %s: %v", w.Kind, w.Target, err)
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) error { return sleep(ctx, time.Until(t)) }

// runEvents performs the process faults and operator actions.
func (r *Runner) runEvents(ctx context.Context) {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0x6f7073))
	for _, e := range r.cfg.Events {
		if sleepUntil(ctx, r.t0.Add(e.At)) != nil {
			return
		}
		r.logf("soak: +%s %s %s", time.Since(r.t0).Round(time.Second), e.Kind, eventArgs(e))
		switch e.Kind {
		case EvSigkill:
			r.fleet.Kill(e.Index, syscall.SIGKILL)
		case EvSigterm:
			r.fleet.Kill(e.Index, syscall.SIGTERM)
		case EvScale:
			r.fleet.Scale(e.N)
		case EvProducer:
			r.startProducer(ctx, 0)
		case EvProducerKill:
			r.startProducer(ctx, time.Duration(e.N)*time.Millisecond)
		case EvPause:
			r.operatorAsync(ctx, "pause", 2*time.Minute, "migratectl", "pause")
		case EvResume:
			r.operatorAsync(ctx, "resume", 2*time.Minute, "migratectl", "resume")
		case EvThrottle:
			r.operatorAsync(ctx, "throttle", 2*time.Minute, "migratectl", "throttle", "--rate", fmt.Sprintf("%.2f", e.Rate))
		case EvThrottleOff:
			r.operatorAsync(ctx, "throttle_off", 2*time.Minute, "migratectl", "throttle", "--off")
		case EvCleanup:
			r.operatorAsync(ctx, "cleanup", 2*time.Minute, "migratectl", "cleanup", "--grace", r.cfg.CleanupGrace.String(), "--again")
		case EvRedrive:
			// Look before the messages move back (failure_history judges
			// them at the finish), then redrive.
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.recordBeforeRedrive(ctx)
				r.operatorAsync(ctx, "dlq_redrive", 45*time.Second, "migratectl", "dlq", "redrive")
			}()
		case EvRollback, EvPauseRollback:
			r.wg.Add(1)
			seed := rng.Uint64()
			go func() { defer r.wg.Done(); r.rollback(ctx, e, seed) }()
		case EvArchivedAssign:
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.archivedAssign(ctx, e) }()
		case EvArchivedPurge:
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.archivedPurge(ctx) }()
		}
	}
}

func eventArgs(e Event) string {
	switch e.Kind {
	case EvScale:
		return fmt.Sprintf("to %d", e.N)
	case EvThrottle:
		return fmt.Sprintf("%.1f photos/s", e.Rate)
	case EvRollback, EvPauseRollback:
		return fmt.Sprintf("%d photos, delete-new %v", e.N, e.DeleteNew)
	case EvProducerKill:
		return fmt.Sprintf("after %dms", e.N)
	case EvArchivedAssign:
		return fmt.Sprintf("%d photos", e.N)
	}
	return ""
}

func (r *Runner) count(what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.operator[what]
	if c == nil {
		c = &Count{}
		r.operator[what] = c
	}
	if err != nil {
		c.Failed++
		c.Last = err.Error()
	} else {
		c.OK++
	}
}

func (r *Runner) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *Runner) violate(v Violation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.violations = append(r.violations, v)
}

// operatorAsync runs a migratectl command in the background (an outage may
// make it hang for a while; the schedule goes on), interrupting it after
// limit as an operator would.
func (r *Runner) operatorAsync(ctx context.Context, what string, limit time.Duration, name string, args ...string) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
		defer cancel()
		_, _, err := r.procs.Run(cctx, name, args...)
		r.count(what, err)
	}()
}

// operatorRetry runs one of the finishing commands, retrying twice (the
// faults are over, but a connection may still be settling). A command that
// still fails, or does not end within limit (an operator would interrupt
// it), is a violation: with the infrastructure healthy again, the operator's
// commands must work.
func (r *Runner) operatorRetry(ctx context.Context, what string, limit time.Duration, name string, args ...string) (string, error) {
	var out string
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(3 * time.Second)
		}
		cctx, cancel := context.WithTimeout(ctx, limit)
		out, _, err = r.procs.Run(cctx, name, args...)
		timedOut := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		r.count(what, err)
		if timedOut {
			r.violate(Violation{Invariant: InvOperations, Detail: fmt.Sprintf("%s %s did not end within %s after the faults ended (interrupted)", name, strings.Join(args, " "), limit)})
			return out, err
		}
		if err == nil || ctx.Err() != nil {
			return out, err
		}
	}
	r.violate(Violation{Invariant: InvOperations, Detail: fmt.Sprintf("%s %s failed three times after the faults ended: %v", name, strings.Join(args, " "), err)})
	return out, err
}

// startProducer runs the producer; killAfter > 0 SIGKILLs it after that long
// (it resumes from its checkpoint at the next start). Rollbacks recorded since
// the last start must still be in force now: only the operator's new producer
// run may migrate those photos again.
func (r *Runner) startProducer(ctx context.Context, killAfter time.Duration) {
	r.checkRollbacksFinal(ctx)
	if r.producerRunning() {
		return
	}
	r.noteResume(ctx, "") // before it starts: the checkpoint it resumes from
	p := r.launchProducer()
	if p == nil || killAfter <= 0 {
		return
	}
	go func() {
		select {
		case <-time.After(killAfter):
			if p.alive() {
				p.signal(syscall.SIGKILL)
				r.count("producer_killed", nil)
			}
		case <-p.done:
		}
	}()
}

// launchProducer starts a producer unless one is running and counts the run
// when it ends: a producer that exits with an error (one that could not reach
// Postgres in an outage, say) is a failed run, not one that covered the
// ledger; one the harness signalled is counted as killed where it is
// signalled. It returns nil when it started nothing.
func (r *Runner) launchProducer() *proc {
	r.mu.Lock()
	if r.producer != nil && r.producer.alive() {
		r.mu.Unlock()
		return nil
	}
	p, err := r.procs.start("producer")
	if err == nil {
		r.producer = p
	}
	r.mu.Unlock()
	if err != nil {
		r.count("producer_run", err)
		return nil
	}
	go func() {
		<-p.done
		if p.signalled.Load() {
			return
		}
		if p.err != nil {
			r.count("producer_run", fmt.Errorf("%s: %w (its log: %s.log)", p.name, p.err, p.name))
			return
		}
		r.count("producer_run", nil)
	}()
	return p
}

// producerRunning reports whether a producer process is alive.
func (r *Runner) producerRunning() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.producer != nil && r.producer.alive()
}

// rollback rolls back a few migrated photos (optionally pausing the fleet
// around it, as the README asks), recording those rolled back.
func (r *Runner) rollback(ctx context.Context, e Event, seed uint64) {
	migrated, err := ledgertest.ReadMoveStates(ctx, r.env.Store, ledger.StateMigrated)
	if err != nil {
		r.count("rollback", err)
		return
	}
	var ids []string
	for _, m := range migrated {
		ids = append(ids, m.PhotoID)
	}
	if len(ids) == 0 {
		return
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	if e.Kind == EvPauseRollback {
		if _, _, err := r.procs.Run(ctx, "migratectl", "pause"); err != nil {
			r.count("pause", err)
			return
		}
		r.count("pause", nil)
		_ = sleep(ctx, 3*time.Second) // a control interval and then some
	}
	for range e.N {
		id := ids[rng.IntN(len(ids))]
		args := []string{"rollback", "--photo", id, "--json"}
		if e.DeleteNew {
			args = append(args, "--delete-new")
		}
		producerBefore := r.producerRunning()
		out, code, err := r.procs.Run(ctx, "migratectl", args...)
		var rep rollback.Report
		switch {
		case err == nil && json.Unmarshal([]byte(out), &rep) == nil && rep.RolledBack == 1:
			r.count("rollback", nil)
			if !producerBefore && !r.producerRunning() {
				r.mu.Lock()
				r.rolledBack[id] = time.Now()
				r.mu.Unlock()
			}
		case code == 2:
			r.count("rollback_refused", nil) // the app changed the row: refused, as documented
			why := tail(out, 3)
			var refused rollback.Report
			if json.Unmarshal([]byte(out), &refused) == nil {
				var reasons []string
				for _, f := range refused.Refused {
					reasons = append(reasons, f.Reason)
				}
				why = strings.Join(reasons, "; ")
			}
			r.note("rollback --photo %s refused at %s: %s", id, time.Now().Format("15:04:05.000"), why)
		default:
			r.count("rollback", err)
			// Kept for diagnosis: a rollback that fails between copying a
			// cleaned legacy object back and recording it leaves the ledger
			// saying the object is deleted (cleanup_accounted).
			r.note("rollback --photo %s failed at %s: %v", id, time.Now().Format("15:04:05.000"), err)
		}
	}
	if e.Kind == EvPauseRollback {
		_, _, err := r.procs.Run(ctx, "migratectl", "resume")
		r.count("resume", err)
	}
}

// checkRollbacksFinal: a rolled-back photo stays rolled back until the
// operator starts the producer again (DESIGN.md: "A rollback is final too
// until the operator starts a new run").
func (r *Runner) checkRollbacksFinal(ctx context.Context) {
	r.mu.Lock()
	pending := r.rolledBack
	r.rolledBack = map[string]time.Time{}
	r.mu.Unlock()
	for id, at := range pending {
		state, swapped, err := ledgertest.ReadSwapOf(ctx, r.env.Store, id)
		if err != nil {
			continue
		}
		if state == ledger.StateDeleted {
			// The application deleted the photo after its rollback (cleanup
			// or a worker recorded it): the user's deletion, not a new
			// migration, provided the row is really gone.
			var gone bool
			if r.env.Store.Pool().QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM photos WHERE id::text = $1)`, id).Scan(&gone) == nil && gone {
				continue
			}
		}
		if state != ledger.StateRolledBack {
			d := fmt.Sprintf("rolled back at %s, but the ledger says %s", at.Format(time.RFC3339Nano), state)
			if swapped != nil {
				d += " (swapped again at " + swapped.Format(time.RFC3339Nano) + ")"
			}
			r.violate(Violation{Invariant: InvRollbackFinal, PhotoID: id, Detail: d + " before the operator ran the producer again"})
		}
	}
}

// progress logs a line every 15 seconds.
func (r *Runner) progress(ctx context.Context) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var counts []string
		byState, err := ledgertest.CountMovesByState(ctx, r.env.Store)
		if err == nil {
			for _, c := range byState {
				counts = append(counts, fmt.Sprintf("%s=%d", c.State, c.N))
			}
		}
		s := r.sim.Stats().Summary()
		r.logf("soak: +%s workers=%d ledger[%s] reads=%d bad=%d s3 requests=%d faults=%d",
			time.Since(r.t0).Round(time.Second), r.fleet.Live(), strings.Join(counts, " "), s.TotalReads(), len(s.BadReads),
			r.fp.Counts().Total(), r.fp.Counts().TotalFaults())
	}
}

// finish does what an operator does to end the migration: the faults end
// (the infrastructure recovers), the fleet is resumed and unthrottled, the
// DLQ is redriven, and the fleet drains until the queue is empty and nothing
// is in hand. At that point no photo may be left enqueued or in progress (its
// message would be lost). Then the operator runs the producer once more (a new
// run: legacy rows the application inserted late and rolled-back photos) and
// the fleet drains again.
func (r *Runner) finish(ctx context.Context) error {
	r.sim.PauseWrites(true)
	_ = sleep(ctx, 2*time.Second) // writes in flight complete
	r.sim.SetPhase("finish")
	r.fp.SetEnabled(false)
	if err := r.nf.Heal(); err != nil {
		return err
	}
	waitGroup(&r.wg, 3*time.Minute)
	r.fleet.Scale(2)
	_, _ = r.operatorRetry(ctx, "resume", time.Minute, "migratectl", "resume")
	_, _ = r.operatorRetry(ctx, "throttle_off", time.Minute, "migratectl", "throttle", "--off")
	// The producer of the run may still be going: let it end first.
	r.mu.Lock()
	p := r.producer
	r.mu.Unlock()
	if p != nil {
		select {
		case <-p.done:
		case <-time.After(2 * time.Minute):
			p.signal(syscall.SIGKILL)
			<-p.done
		}
	}
	r.resumeUnfinishedRuns(ctx)
	r.recordBeforeRedrive(ctx)
	r.inspectDLQ(ctx)
	_, _ = r.operatorRetry(ctx, "dlq_redrive", time.Minute, "migratectl", "dlq", "redrive")
	deadline := time.Now().Add(r.cfg.FinishTimeout)
	if err := r.drain(ctx, deadline); err != nil {
		return err
	}
	r.checkNothingStuck(ctx)
	if err := r.checkSettled(ctx); err != nil {
		r.note("check settled before the finishing producer run: %v", err)
	}
	r.checkRollbacksFinal(ctx)
	_, _ = r.operatorRetry(ctx, "producer_run", 3*time.Minute, "producer", "--new-run")
	return r.drain(ctx, deadline)
}

// resumeUnfinishedRuns reruns every producer run that did not finish: one that
// failed during an outage (its error says "rerun the producer to resume") has
// recorded photos as enqueued whose messages it never sent, and the operator
// reruns it, as the error says. Each run is resumed by name: a resumed run
// leaves photos rolled back since it started alone (checkRollbacksFinal).
func (r *Runner) resumeUnfinishedRuns(ctx context.Context) {
	runs, err := r.env.Store.RunListUnfinishedProducer(ctx)
	if err != nil {
		r.note("%v", err)
		return
	}
	for _, id := range runs {
		r.logf("soak: resuming unfinished producer run %s", id)
		r.noteResume(ctx, id)
		_, _ = r.operatorRetry(ctx, "producer_resume", 3*time.Minute, "producer", "--run-id", id)
	}
}

// inspectDLQ looks at every message in the DLQ before the operator redrives
// it (receiving with a short visibility, then handing each back). A message
// a worker dead-lettered carries its reason; one without a reason was moved
// by the queue's redrive policy after maxReceiveCount deliveries: its
// receives were spent, here only on injected transient faults.
func (r *Runner) inspectDLQ(ctx context.Context) {
	seen := map[string]bool{}
	var receipts []string
	defer func() {
		for _, h := range receipts {
			_ = r.env.DLQ.ChangeVisibility(context.WithoutCancel(ctx), h, 0)
		}
	}()
	for range 1000 {
		msgs, err := r.env.DLQ.Receive(ctx, 10, time.Second, 2*time.Minute)
		if err != nil || len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			receipts = append(receipts, m.ReceiptHandle)
			if seen[m.ID] {
				continue
			}
			seen[m.ID] = true
			if m.Attributes[queue.AttrReason] != "" {
				continue
			}
			id := m.Body
			if msg, err := queue.Decode(m.Body); err == nil {
				id = msg.PhotoID
			}
			r.violate(Violation{Invariant: InvDLQ, PhotoID: id, Detail: fmt.Sprintf("dead-lettered by the queue's redrive policy after %d receives (retries_exhausted): the receive budget went on transient, injected faults", m.ReceiveCount)})
		}
	}
	r.logf("soak: %d messages in the DLQ before the redrive", len(seen))
}

// drain waits until the main queue is empty (nothing visible, in flight or
// delayed) and no photo is in progress, three polls in a row.
func (r *Runner) drain(ctx context.Context, deadline time.Time) error {
	start := time.Now()
	quiet := 0
	for time.Now().Before(deadline) {
		d, err := r.env.Queue.Depth(ctx)
		busy := 0
		if err == nil {
			// An unreadable count reads as 0, as it always has: the queue's
			// depth is what the drain waits on first.
			busy, _ = ledgertest.CountMovesIn(ctx, r.env.Store, ledger.StateInProgress)
		}
		if err == nil && d.Total() == 0 && busy == 0 {
			quiet++
			if quiet >= 3 {
				r.logf("soak: idle after %s", time.Since(start).Round(time.Second))
				return nil
			}
		} else {
			quiet = 0
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	r.violate(Violation{Invariant: InvEndState, Detail: fmt.Sprintf("the queue did not drain within %s of the faults ending", r.cfg.FinishTimeout)})
	return errors.New("the queue did not drain within the finish timeout")
}

// checkNothingStuck: once the queue is empty and the fleet idle, no photo may
// be enqueued or in progress: its message is gone, and only a new producer
// run would ever migrate it.
func (r *Runner) checkNothingStuck(ctx context.Context) {
	stuck, err := ledgertest.ReadMoveStates(ctx, r.env.Store, ledger.StateEnqueued, ledger.StateInProgress)
	if err != nil {
		r.note("check stuck photos: %v", err)
		return
	}
	for _, m := range stuck {
		r.violate(Violation{Invariant: InvEndState, PhotoID: m.PhotoID, Detail: fmt.Sprintf("%s with an empty queue and an idle fleet (attempts %d, last reason %q): its message was lost", m.State, m.Attempts, m.LastReason)})
	}
}

func waitGroup(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
