package soak

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one running binary.
type proc struct {
	name string
	path string // the copy path of a worker (PathCareful, PathCopyFirst)
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	signalled atomic.Bool // the harness signalled it: its exit is ours, not its own
}

// Procs starts the built binaries with the run's environment, each logging to
// its own file in the run directory.
type Procs struct {
	BinDir string
	Env    []string
	Dir    string // logs

	mu  sync.Mutex
	seq int
}

func (p *Procs) start(name string, args ...string) (*proc, error) {
	p.mu.Lock()
	p.seq++
	n := p.seq
	p.mu.Unlock()
	logf, err := os.Create(filepath.Join(p.Dir, fmt.Sprintf("%s-%03d.log", name, n)))
	if err != nil {
		return nil, err
	}
	c := exec.Command(filepath.Join(p.BinDir, name), args...)
	c.Env = p.Env
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pr := &proc{name: fmt.Sprintf("%s-%03d", name, n), cmd: c, done: make(chan struct{})}
	go func() {
		pr.err = c.Wait()
		logf.Close()
		close(pr.done)
	}()
	return pr, nil
}

func (pr *proc) alive() bool {
	select {
	case <-pr.done:
		return false
	default:
		return true
	}
}

func (pr *proc) signal(sig syscall.Signal) {
	if pr.alive() {
		pr.signalled.Store(true)
		_ = pr.cmd.Process.Signal(sig)
	}
}

// Run runs a binary to completion (or until ctx ends, then SIGKILL) and
// returns its standard output and exit code.
func (p *Procs) Run(ctx context.Context, name string, args ...string) (string, int, error) {
	c := exec.CommandContext(ctx, filepath.Join(p.BinDir, name), args...)
	c.Env = p.Env
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	if c.ProcessState != nil {
		code = c.ProcessState.ExitCode()
	}
	if err != nil {
		return out.String(), code, fmt.Errorf("%s %v: %w: %s", name, args, err, tail(errb.String(), 5))
	}
	return out.String(), code, nil
}

func tail(s string, n int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}

// The copy paths a worker can be started to take.
const (
	// PathCareful reads and pins each source before its copy; with the
	// soak's lowered multipart threshold, large objects go part by part.
	PathCareful = "careful"
	// PathCopyFirst copies each object before reading its source (the
	// worker's --copy-first at the default multipart threshold).
	PathCopyFirst = "copy_first"
)

// Fleet keeps a target number of worker processes running, restarting killed
// ones after a delay. Each worker is started on one of the fleet's copy
// paths: the one with the fewest live workers, the first listed on a tie.
type Fleet struct {
	procs *Procs
	paths []string            // in order of preference
	args  map[string][]string // each path's worker arguments
	delay time.Duration

	mu        sync.Mutex
	target    int
	workers   []*proc
	notBefore time.Time
	Started   int
	Killed    int
	Termed    int
	Scaled    int
	Crashed   int // exited without being signalled
	ByPath    map[string]int
	stopping  bool
}

// NewFleet returns a fleet of target workers started with args.
func NewFleet(procs *Procs, target int, delay time.Duration, args ...string) *Fleet {
	return NewMixedFleet(procs, target, delay, []string{PathCareful}, map[string][]string{PathCareful: args})
}

// NewMixedFleet returns a fleet of target workers, each started with the
// args of one of paths (the least represented among the live workers, the
// first of paths on a tie).
func NewMixedFleet(procs *Procs, target int, delay time.Duration, paths []string, args map[string][]string) *Fleet {
	return &Fleet{procs: procs, paths: paths, args: args, delay: delay, target: target, ByPath: map[string]int{}}
}

// nextPath is the path of the next worker to start: the one with the fewest
// live workers, so that a fleet rescaled or killed down keeps its mix (and a
// fleet of one takes the first path).
func (f *Fleet) nextPath() string {
	live := map[string]int{}
	for _, w := range f.workers {
		live[w.path]++
	}
	best := f.paths[0]
	for _, p := range f.paths[1:] {
		if live[p] < live[best] {
			best = p
		}
	}
	return best
}

// Run reconciles the fleet every 200ms until ctx ends.
func (f *Fleet) Run(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		f.reconcile()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Fleet) reconcile() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return
	}
	live := f.workers[:0]
	for _, w := range f.workers {
		if w.alive() {
			live = append(live, w)
		}
	}
	f.workers = live
	for len(f.workers) > f.target {
		// Scaling down stops a worker of the most represented path (the
		// last started of it), so the mix nextPath keeps holds.
		i := f.surplus()
		f.workers[i].signal(syscall.SIGTERM)
		f.workers = append(f.workers[:i], f.workers[i+1:]...)
	}
	if len(f.workers) < f.target && time.Now().After(f.notBefore) {
		path := f.nextPath()
		w, err := f.procs.start("worker", f.args[path]...)
		if err == nil {
			w.path = path
			f.workers = append(f.workers, w)
			f.Started++
			f.ByPath[path]++
		}
	}
}

// surplus is the index of the worker to stop when scaling down: the last
// started of the path with the most live workers (the last of paths on a
// tie, so that a fleet of one keeps the first path).
func (f *Fleet) surplus() int {
	live := map[string]int{}
	for _, w := range f.workers {
		live[w.path]++
	}
	most := f.paths[len(f.paths)-1]
	for i := len(f.paths) - 2; i >= 0; i-- {
		if live[f.paths[i]] > live[most] {
			most = f.paths[i]
		}
	}
	for i := len(f.workers) - 1; i >= 0; i-- {
		if f.workers[i].path == most {
			return i
		}
	}
	return len(f.workers) - 1
}

// Scale sets the target.
func (f *Fleet) Scale(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target = n
	f.Scaled++
}

// Kill signals the index-th running worker (modulo their number) and holds
// restarts back for the fleet's delay.
func (f *Fleet) Kill(index int, sig syscall.Signal) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.workers) == 0 {
		return ""
	}
	w := f.workers[index%len(f.workers)]
	w.signal(sig)
	if sig == syscall.SIGKILL {
		f.Killed++
	} else {
		f.Termed++
	}
	f.notBefore = time.Now().Add(f.delay)
	return w.name
}

// Counts returns the fleet's counters.
func (f *Fleet) Counts() FleetCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	byPath := map[string]int{}
	for p, n := range f.ByPath {
		byPath[p] = n
	}
	return FleetCounts{Started: f.Started, Killed: f.Killed, Termed: f.Termed, Scaled: f.Scaled, StartedByPath: byPath}
}

// Live is the number of running workers.
func (f *Fleet) Live() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, w := range f.workers {
		if w.alive() {
			n++
		}
	}
	return n
}

// Stop SIGTERMs every worker and waits for them to exit (SIGKILL after grace).
func (f *Fleet) Stop(grace time.Duration) {
	f.mu.Lock()
	f.stopping = true
	workers := append([]*proc(nil), f.workers...)
	f.mu.Unlock()
	for _, w := range workers {
		w.signal(syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for _, w := range workers {
		select {
		case <-w.done:
		case <-deadline:
			w.signal(syscall.SIGKILL)
			<-w.done
		}
	}
}

// Resume lets a stopped fleet reconcile again.
func (f *Fleet) Resume(target int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopping = false
	f.target = target
	f.notBefore = time.Time{}
}
