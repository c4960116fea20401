package scalebench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keymigrate/keymigrate/internal/harness/synths3"
)

// phase is one measured command, run as shards processes at once.
type phase struct {
	name   string
	args   []string
	shards int
	// of, when more than zero, makes the phase a sample: its processes
	// are shards 0..shards-1 of `of` shards, so together they cover
	// shards/of of the ledger (Config.Sample).
	of int
	// inventory phases need the stage's inventory report written first;
	// the token inventoryLocation in args is replaced by its location.
	inventory bool
	// restartFirst: a pass of the same options and shard count ran before
	// (cleanup tells passes apart by --grace, --dry-run and n, not by
	// --inventory); forget its cursors first, unmeasured, or the phase
	// would find its shards finished and do nothing.
	restartFirst bool
	// okCodes are the exit codes that are a result, not a failure.
	okCodes []int
}

// inventoryLocation in a phase's args stands for the written report.
const inventoryLocation = "{inventory}"

// fraction is the part of the ledger the phase covers.
func (p phase) fraction() float64 {
	if p.of > 0 {
		return float64(p.shards) / float64(p.of)
	}
	return 1
}

// shardArg is process i's --shard value, or "" when it runs unsharded.
func (p phase) shardArg(i int) string {
	switch {
	case p.of > 0:
		return strconv.Itoa(i) + "/" + strconv.Itoa(p.of)
	case p.shards > 1:
		return strconv.Itoa(i) + "/" + strconv.Itoa(p.shards)
	}
	return ""
}

// sampled is a phase of n processes. With sample > 0 they cover 1/sample of
// the ledger whatever n (shards 0..n-1 of n*sample), so n = 1 and n = 4
// compare one process with four on the same amount of work.
func sampled(name string, args []string, n, sample int, okCodes ...int) phase {
	p := phase{name: name, args: args, shards: n, okCodes: okCodes}
	if sample > 0 {
		p.of = n * sample
		p.name = fmt.Sprintf("%s (1/%d)", name, sample)
	}
	return p
}

func legacyPhases(cfg Config) []phase {
	var ps []phase
	if !cfg.SkipListing {
		// --calibrate 0 reads the latency from the ledger (none yet): the
		// phase measured is the listing and the join, not a scratch copy.
		ps = append(ps, phase{name: "plan", args: []string{"plan", "--json", "--quiet", "--calibrate", "0"}, shards: 1})
	}
	if cfg.Inventory {
		ps = append(ps, phase{name: "plan --inventory", args: []string{"plan", "--json", "--quiet", "--calibrate", "0", "--inventory", inventoryLocation}, shards: 1, inventory: true})
	}
	return append(ps, phase{name: "status --census", args: []string{"status", "--json", "--census"}, shards: 1})
}

func finishedPhases(cfg Config) []phase {
	ps := []phase{
		{name: "status", args: []string{"status", "--json"}, shards: 1},
		{name: "status --census", args: []string{"status", "--json", "--census"}, shards: 1},
	}
	if cfg.Inventory {
		// The report is loaded once; verify --inventory then reads no
		// listing and HEADs only what the report cannot vouch for, so it
		// covers the whole ledger even where the HEAD phases are sampled.
		ps = append(ps,
			phase{name: "inventory load", args: []string{"inventory", "load", "--inventory", inventoryLocation}, shards: 1, inventory: true},
			phase{name: "verify --inventory", args: []string{"verify", "--json", "--inventory"}, shards: 1, okCodes: []int{2}})
	}
	for _, n := range cfg.Shards {
		// verify exits 2 when its gate fails: a result, reported.
		ps = append(ps, sampled("verify", []string{"verify", "--json"}, n, cfg.Sample, 2))
	}
	for _, n := range cfg.Shards {
		// verify --run R --shard i/n pages through the run's photos by a
		// hash of their ids (ledger's RunPhotoIDsShard), a statement of its
		// own: measured with shards only (without them verify --run reads
		// the run as verify reads the ledger, and the CI test, at one
		// shard, stays as long as it was).
		if n > 1 {
			ps = append(ps, sampled("verify --run", []string{"verify", "--json", "--run", synths3.DefaultRunID}, n, cfg.Sample, 2))
		}
	}
	for _, n := range cfg.Shards {
		if cfg.SkipDryRun {
			break
		}
		ps = append(ps, sampled("cleanup --dry-run", []string{"cleanup", "--json", "--grace", "0s", "--dry-run"}, n, cfg.Sample))
	}
	if cfg.Inventory && !cfg.SkipDryRun {
		n := cfg.Shards[len(cfg.Shards)-1]
		p := sampled("cleanup --dry-run --inventory", []string{"cleanup", "--json", "--grace", "0s", "--dry-run", "--inventory"}, n, cfg.Sample)
		p.restartFirst = true
		ps = append(ps, p)
	}
	// The real cleanup once, with the most shards (it changes the bucket).
	ps = append(ps, sampled("cleanup", []string{"cleanup", "--json", "--grace", "0s"}, cfg.Shards[len(cfg.Shards)-1], cfg.Sample),
		phase{name: "ledger compact", args: []string{"ledger", "compact", "--json", "--older-than", "0s", "--yes"}, shards: 1},
		phase{name: "status", args: []string{"status", "--json"}, shards: 1})
	return ps
}

// runPhase starts the phase's processes at once (shard i of n each, when n
// is more than 1) and waits for all of them.
//
// With limit > 0 the processes are stopped (SIGTERM, SIGKILL 30 s later) once
// they have run that long: a window of a phase too long to run whole here,
// for its memory over time (Measure.RSSQuarters) on the whole of the loaded
// tables.
func runPhase(ctx context.Context, bin string, env []string, p phase, profileDir string, limit time.Duration) (Measure, error) {
	m := Measure{Phase: p.name, Shards: p.shards}
	type result struct {
		i       int
		out     string
		code    int
		ru      *syscall.Rusage
		rss     rssWatch
		stopped bool
		err     error
	}
	results := make(chan result, p.shards)
	start := time.Now()
	for i := range p.shards {
		args := p.args
		if sh := p.shardArg(i); sh != "" {
			args = append(append([]string{}, args...), "--shard", sh)
		}
		go func() {
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = append(os.Environ(), env...)
			if profileDir != "" {
				name := profileName(p.name, i)
				cmd.Env = append(cmd.Env, "KEYMIGRATE_CPU_PROFILE="+filepath.Join(profileDir, name+".cpu.prof"),
					"KEYMIGRATE_HEAP_PROFILE="+filepath.Join(profileDir, name+".heap.prof"))
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			var rss rssWatch
			var stopped atomic.Bool
			err := cmd.Start()
			if err == nil {
				stop := rss.watch(cmd.Process.Pid)
				if limit > 0 {
					proc := cmd.Process
					term := time.AfterFunc(limit, func() {
						stopped.Store(true)
						_ = proc.Signal(syscall.SIGTERM)
					})
					kill := time.AfterFunc(limit+30*time.Second, func() { _ = proc.Kill() })
					defer term.Stop()
					defer kill.Stop()
				}
				err = cmd.Wait()
				stop()
			}
			r := result{i: i, out: stdout.String(), rss: rss, stopped: stopped.Load()}
			if cmd.ProcessState != nil {
				r.code = cmd.ProcessState.ExitCode()
				r.ru, _ = cmd.ProcessState.SysUsage().(*syscall.Rusage)
			}
			var exit *exec.ExitError
			if err != nil && !(errors.As(err, &exit) && (okCode(p.okCodes, r.code) || r.stopped)) {
				r.err = fmt.Errorf("migratectl %v: %w\n%s", args, err, tail(stderr.String(), 2000))
			}
			results <- r
		}()
	}
	var errs []error
	m.ExitCodes = make([]int, p.shards)
	for range p.shards {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
		}
		m.ExitCodes[r.i] = r.code
		if r.i == 0 {
			m.Output = r.out
		}
		// The peak is the process's own VmHWM: rusage's maxrss of a child
		// started by os/exec (vfork) starts at the parent's RSS, which
		// here (the synthetic endpoint's process) is larger than most
		// phases.
		if r.rss.hwm >= m.PeakRSS {
			m.PeakRSS, m.RSSQuarters = r.rss.hwm, r.rss.quarters()
		}
		m.Stopped = m.Stopped || r.stopped
		if r.ru != nil {
			m.CPU += time.Duration(r.ru.Utime.Nano() + r.ru.Stime.Nano())
		}
	}
	m.Wall = time.Since(start)
	return m, errors.Join(errs...)
}

// rssWatch follows one process's memory from /proc/pid/status every 50 ms:
// its peak resident set since its exec (VmHWM) and its resident set over
// time (VmRSS), so that a report can tell memory that grows with the work
// done from memory that is flat.
type rssWatch struct {
	hwm     int64
	samples []rssSample
}

type rssSample struct {
	at  time.Duration
	rss int64
}

// watch samples pid until stop, which takes a last sample: VmHWM only
// grows, so the last reading before exit is the peak up to the final 50 ms.
func (w *rssWatch) watch(pid int) (stop func()) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	start := time.Now()
	kib := func(line, prefix string) (int64, bool) {
		v, ok := strings.CutPrefix(line, prefix)
		if !ok {
			return 0, false
		}
		var n int64
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &n); err != nil {
			return 0, false
		}
		return n * 1024, true
	}
	read := func() {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if n, ok := kib(line, "VmHWM:"); ok {
				w.hwm = max(w.hwm, n)
			}
			if n, ok := kib(line, "VmRSS:"); ok {
				w.samples = append(w.samples, rssSample{at: time.Since(start), rss: n})
			}
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// quarters is the largest resident set in each quarter of the process's
// life: flat quarters are memory bounded whatever the work done; memory
// that grows with it shows as rising quarters.
func (w *rssWatch) quarters() [4]int64 {
	var q [4]int64
	if len(w.samples) == 0 {
		return q
	}
	end := w.samples[len(w.samples)-1].at
	for _, s := range w.samples {
		i := 3
		if end > 0 {
			i = min(3, int(4*s.at/(end+1)))
		}
		q[i] = max(q[i], s.rss)
	}
	return q
}

// profileName names the profiles of process i of a phase (.cpu.prof, .heap.prof).
func profileName(phase string, i int) string {
	slug := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, phase)
	return fmt.Sprintf("%s-%d", slug, i)
}

// restart runs the phase's command once with --restart (shard 0 of its n
// names the pass), unmeasured.
func restart(ctx context.Context, bin string, env []string, p phase) error {
	args := append(append([]string{}, p.args...), "--restart")
	if sh := p.shardArg(0); sh != "" {
		args = append(args, "--shard", sh)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("migratectl %v: %w\n%s", args, err, tail(string(out), 2000))
	}
	return nil
}

func okCode(codes []int, c int) bool {
	for _, ok := range codes {
		if c == ok {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
