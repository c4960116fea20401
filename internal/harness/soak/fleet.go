package soak

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// proc is one running binary.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
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

// Fleet keeps a target number of worker processes running, restarting killed
// ones after a delay.
type Fleet struct {
	procs *Procs
	args  []string
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
	stopping  bool
}

// NewFleet returns a fleet of target workers started with args.
func NewFleet(procs *Procs, target int, delay time.Duration, args ...string) *Fleet {
	return &Fleet{procs: procs, args: args, delay: delay, target: target}
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
		w := f.workers[len(f.workers)-1]
		w.signal(syscall.SIGTERM)
		f.workers = f.workers[:len(f.workers)-1]
	}
	if len(f.workers) < f.target && time.Now().After(f.notBefore) {
		w, err := f.procs.start("worker", f.args...)
		if err == nil {
			f.workers = append(f.workers, w)
			f.Started++
		}
	}
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
	return FleetCounts{Started: f.Started, Killed: f.Killed, Termed: f.Termed, Scaled: f.Scaled}
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
