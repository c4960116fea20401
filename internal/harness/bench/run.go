package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/s3caps"
)

// Config is what every benchmark needs.
type Config struct {
	Stack *Stack
	// WorkerBin is the built worker binary; S5cmdBin the peer (Bench only).
	WorkerBin, S5cmdBin string
	// LogDir receives the processes' logs and s5cmd's command file.
	LogDir string
	// S3PID, if set, is the S3 server's process, whose CPU time is reported.
	S3PID int
	// Photos are seeded, from Seed, into each backlog.
	Photos int
	Seed   uint64
	// Keep leaves the backlogs (database, bucket, queues) in place.
	Keep bool
	// Progress receives a line per step.
	Progress io.Writer
}

// runner holds the proxy every measured S3 request goes through.
type runner struct {
	cfg     Config
	proxy   *faultproxy.Proxy
	proxied *s3.Client
	// endpoint is where the workers send S3 requests: the proxy, or an
	// enforcer in front of it.
	endpoint string
	// enforce: the backlogs' recorded capabilities are probed through the
	// endpoint (conditional copies enforced), not the server directly.
	enforce bool
	stamp   string
	seq     int
}

func newRunner(ctx context.Context, cfg Config, plan faultproxy.Plan, maxConns int) (*runner, error) {
	if cfg.Stack == nil || cfg.WorkerBin == "" || cfg.LogDir == "" || cfg.Photos <= 0 {
		return nil, errors.New("bench: a stack, the worker binary, a log directory and a number of photos are required")
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, err
	}
	p, err := faultproxy.New(cfg.Stack.S3Endpoint, plan, 1)
	if err != nil {
		return nil, err
	}
	if err := p.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return &runner{
		cfg: cfg, proxy: p, proxied: s3Client(cfg.Stack.aws, p.URL(), maxConns), endpoint: p.URL(),
		stamp: strconv.FormatInt(time.Now().Unix(), 36),
	}, nil
}

func (r *runner) close() { _ = r.proxy.Close() }

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "bench: "+format+"\n", args...)
}

// backlog seeds and enqueues a fresh backlog of the configured size.
func (r *runner) backlog(ctx context.Context) (*Backlog, error) {
	return r.backlogOf(ctx, r.cfg.Photos)
}

// backlogOf seeds and enqueues a fresh backlog of photos photos.
func (r *runner) backlogOf(ctx context.Context, photos int) (*Backlog, error) {
	r.seq++
	name := fmt.Sprintf("kmbench-%s-%d", r.stamp, r.seq)
	r.logf("seeding %d photos into %s", photos, name)
	b, err := r.cfg.Stack.NewBacklog(ctx, name, photos, r.cfg.Seed)
	if err != nil {
		return nil, err
	}
	if r.enforce {
		// The fleet reads the recorded capabilities: record what the
		// enforcer answers (the probe's copy is conditional).
		objects := objstore.New(s3Client(r.cfg.Stack.aws, r.endpoint, 4), name, objstore.DefaultOptions())
		c, err := s3caps.Resolve(ctx, b.Store, objects, true)
		if err != nil || !c.ConditionalCopy {
			r.drop(ctx, b)
			return nil, fmt.Errorf("probe the enforcing proxy: conditional copy %v: %w", c.ConditionalCopy, err)
		}
	}
	r.logf("%s: %d photos, %d objects, %d enqueued", name, b.Seeded.Photos, b.Seeded.Objects, b.Enqueued)
	return b, nil
}

// drop removes a backlog unless Keep is set; nil is ignored.
func (r *runner) drop(ctx context.Context, b *Backlog) {
	if b == nil {
		return
	}
	if r.cfg.Keep {
		r.logf("kept %s (database %s)", b.Name, b.DatabaseURL)
		return
	}
	if err := b.Close(context.WithoutCancel(ctx)); err != nil {
		r.logf("removing %s: %v", b.Name, err)
	}
}

// measure runs fn and records in res the S3 requests the proxy saw meanwhile
// and the faults it injected, the S3 server's CPU time and this process's (the
// proxy's, and the raw loop's when fn is the loop).
func (r *runner) measure(res *Result, fn func() error) error {
	before, server0, self0 := r.proxy.Counts(), procCPU(r.cfg.S3PID), selfCPU()
	err := fn()
	after, server1, self1 := r.proxy.Counts(), procCPU(r.cfg.S3PID), selfCPU()
	res.Requests = map[faultproxy.Op]int64{}
	for op, n := range after.Requests {
		if d := n - before.Requests[op]; d > 0 {
			res.Requests[op] = d
		}
	}
	res.Faults = map[faultproxy.Fault]int64{}
	for f, n := range after.Faults {
		if d := n - before.Faults[f]; d > 0 {
			res.Faults[f] = d
		}
	}
	res.ServerCPU, res.SelfCPU = server1-server0, self1-self0
	return err
}

// probe adds the proxy's counters to a sample.
func (r *runner) probe(s *Sample) {
	c := r.proxy.Counts()
	s.Requests, s.Forwarded = c.Total(), c.Forwarded()
	s.SlowDowns, s.InternalErrors = c.Faults[faultproxy.SlowDown], c.Faults[faultproxy.InternalError]
}

// fleet migrates the backlog with spec's workers through the proxy. The
// proxy's clock (its plan's windows) begins as the workers are started.
func (r *runner) fleet(ctx context.Context, b *Backlog, name string, spec FleetSpec) (Result, error) {
	r.logf("%s: %d worker process(es) at --concurrency %d %s", name, spec.Workers, spec.Concurrency, strings.Join(spec.Args, " "))
	res := Result{Name: name}
	env := b.Environ(os.Environ(), r.endpoint)
	var samples []Sample
	if err := r.measure(&res, func() error {
		r.proxy.Begin()
		res.Began = time.Now()
		first := Sample{At: res.Began}
		r.probe(&first)
		var err error
		res.Procs, samples, err = runFleet(ctx, r.cfg.WorkerBin, env, r.cfg.LogDir, b.Name, spec, r.probe)
		res.Samples = append([]Sample{first}, samples...)
		return err
	}); err != nil {
		return res, err
	}
	f, err := readFleet(ctx, b.Store)
	if err != nil {
		return res, err
	}
	res.Photos, res.Objects, res.Unfinished, res.Elapsed = f.Photos, f.Objects, f.Unfinished, f.Last.Sub(f.First)
	res.Retries, res.HandedBack, res.DeadLettered, res.Commits = f.Retries, f.HandedBack, f.DeadLettered, f.Commits
	res.Timeline = Timeline(f.First, f.Commits, samples, 15)
	// Each photo's start to its swap, as plan --calibrate-run reads it.
	if res.Latency, err = b.Store.RunMigrationLatency(ctx, "", 100000); err != nil {
		return res, fmt.Errorf("read the photos' latency: %w", err)
	}
	r.logf("%s: %d photos, %d objects in %.2fs: %.0f photos/s, %.0f objects/s", name, res.Photos, res.Objects, res.Elapsed.Seconds(), res.PhotosPerSec(), res.ObjectsPerSec())
	return res, nil
}

// Bench measures the fleet against a raw CopyObject loop and s5cmd, and the
// fleet without the source recheck, and writes the report to out.
func Bench(ctx context.Context, cfg Config, spec FleetSpec, out io.Writer) error {
	if cfg.S5cmdBin == "" {
		return errors.New("bench: the s5cmd binary is required (deploy/local/stack.sh s5cmd builds it)")
	}
	total := spec.Workers * spec.Concurrency
	r, err := newRunner(ctx, cfg, faultproxy.Plan{}, total)
	if err != nil {
		return err
	}
	defer r.close()
	version, err := exec.CommandContext(ctx, cfg.S5cmdBin, "version").Output()
	if err != nil {
		return fmt.Errorf("s5cmd version: %w", err)
	}
	rep := BenchReport{Photos: cfg.Photos, Seed: cfg.Seed, Workers: spec.Workers, Concurrency: spec.Concurrency, CPUs: runtime.NumCPU(),
		S5cmd: "s5cmd " + strings.TrimSuffix(strings.TrimSpace(string(version)), "-release")}

	a, err := r.backlog(ctx)
	if err != nil {
		return err
	}
	defer func() { r.drop(ctx, a) }()
	if rep.Fleet, err = r.fleet(ctx, a, "fleet", spec); err != nil {
		return err
	}
	keys, err := a.MovedSources(ctx)
	if err != nil {
		return err
	}

	rep.Raw = Result{Name: "raw CopyObject loop", Objects: int64(len(keys))}
	r.logf("%s: %d copies, %d at a time", rep.Raw.Name, len(keys), total)
	if err := r.measure(&rep.Raw, func() error {
		var err error
		rep.Raw.Elapsed, err = rawCopy(ctx, r.proxied, a.Name, keys, "bench-raw/", total)
		return err
	}); err != nil {
		return err
	}

	rep.Peer = Result{Name: rep.S5cmd, Objects: int64(len(keys))}
	r.logf("%s: %d copies, --numworkers %d", rep.Peer.Name, len(keys), total)
	if err := r.measure(&rep.Peer, func() error {
		var err error
		rep.Peer.Procs, err = s5cmdCopy(ctx, cfg.S5cmdBin, r.proxy.URL(), a.Name, keys, "bench-s5cmd/", total, cfg.LogDir)
		rep.Peer.Elapsed = rep.Peer.Procs.Wall
		return err
	}); err != nil {
		return err
	}
	r.drop(ctx, a)
	a = nil

	b, err := r.backlog(ctx)
	if err != nil {
		return err
	}
	defer r.drop(ctx, b)
	noRecheck := spec
	noRecheck.Args = append(append([]string{}, spec.Args...), "--recheck-sources=false")
	if rep.NoRecheck, err = r.fleet(ctx, b, "fleet --recheck-sources=false", noRecheck); err != nil {
		return err
	}
	rep.Write(out)
	return nil
}

// ScaleSpec is a latency scaling measurement.
type ScaleSpec struct {
	// Latency is added to every S3 request.
	Latency time.Duration
	// Concurrency lists the --concurrency of the one-worker runs.
	Concurrency []int
	// Workers lists the fleet sizes run at FleetConcurrency each.
	Workers          []int
	FleetConcurrency int
	// Args are extra worker flags for every run.
	Args []string
	// Profile: each worker writes a CPU profile (FleetSpec.Profile).
	Profile bool
	// Enforce puts a proxy that enforces If-None-Match on CopyObject, as S3
	// does, in front of the fault proxy: the worker takes S3's path.
	Enforce bool
}

// ScaleLatency measures how one worker's rate grows with its concurrency, and
// a fleet's with its size, when every S3 request takes Latency longer, and
// writes the tables to out.
func ScaleLatency(ctx context.Context, cfg Config, spec ScaleSpec, out io.Writer) error {
	most := spec.FleetConcurrency
	for _, c := range spec.Concurrency {
		most = max(most, c)
	}
	plan := faultproxy.Plan{Base: faultproxy.Rates{Latency: 1, LatencyMin: spec.Latency, LatencyMax: spec.Latency}}
	r, err := newRunner(ctx, cfg, plan, most)
	if err != nil {
		return err
	}
	defer r.close()
	if spec.Enforce {
		e, err := newEnforcer(r.proxy.URL(), cfg.Stack.s3)
		if err != nil {
			return err
		}
		defer e.close()
		r.endpoint, r.enforce = e.URL(), true
	}
	rep := ScaleReport{Photos: cfg.Photos, Latency: spec.Latency, CPUs: runtime.NumCPU(), Enforce: spec.Enforce,
		Concurrency: spec.Concurrency, Workers: spec.Workers, FleetConcurrency: spec.FleetConcurrency}
	one := func(name string, fs FleetSpec) (Result, error) {
		b, err := r.backlog(ctx)
		if err != nil {
			return Result{}, err
		}
		defer r.drop(ctx, b)
		return r.fleet(ctx, b, name, fs)
	}
	for _, c := range spec.Concurrency {
		res, err := one(fmt.Sprintf("1 worker x %d", c), FleetSpec{Workers: 1, Concurrency: c, Args: spec.Args, Profile: spec.Profile})
		if err != nil {
			return err
		}
		rep.ByConcurrency = append(rep.ByConcurrency, res)
	}
	for _, n := range spec.Workers {
		res, err := one(fmt.Sprintf("%d workers x %d", n, spec.FleetConcurrency), FleetSpec{Workers: n, Concurrency: spec.FleetConcurrency, Args: spec.Args, Profile: spec.Profile})
		if err != nil {
			return err
		}
		rep.ByWorkers = append(rep.ByWorkers, res)
	}
	rep.Write(out)
	return nil
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user and system CPU time so far, from /proc (0 if
// pid is 0 or unreadable).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	return parseProcStatCPU(string(b))
}

// parseProcStatCPU reads utime and stime (fields 14 and 15, in clock ticks of
// USER_HZ, which is 100 on Linux's common architectures) from a
// /proc/PID/stat line. The command name, field 2, may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseProcStatCPU(stat string) time.Duration {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(stat[i+1:]) // from field 3
	if len(f) < 13 {
		return 0
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(u+s) * 10 * time.Millisecond
}
