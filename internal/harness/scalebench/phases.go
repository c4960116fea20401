package scalebench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// phase is one measured command, run as shards processes at once.
type phase struct {
	name   string
	args   []string
	shards int
	// okCodes are the exit codes that are a result, not a failure.
	okCodes []int
}

func legacyPhases(Config) []phase {
	return []phase{
		// --calibrate 0 reads the latency from the ledger (none yet): the
		// phase measured is the listing and the join, not a scratch copy.
		{name: "plan", args: []string{"plan", "--json", "--quiet", "--calibrate", "0"}, shards: 1},
		{name: "status --census", args: []string{"status", "--json", "--census"}, shards: 1},
	}
}

func finishedPhases(cfg Config) []phase {
	ps := []phase{
		{name: "status", args: []string{"status", "--json"}, shards: 1},
		{name: "status --census", args: []string{"status", "--json", "--census"}, shards: 1},
	}
	for _, n := range cfg.Shards {
		// verify exits 2 when its gate fails: a result, reported.
		ps = append(ps, phase{name: "verify", args: []string{"verify", "--json"}, shards: n, okCodes: []int{2}})
	}
	for _, n := range cfg.Shards {
		if cfg.SkipDryRun {
			break
		}
		ps = append(ps, phase{name: "cleanup --dry-run", args: []string{"cleanup", "--json", "--grace", "0s", "--dry-run"}, shards: n})
	}
	// The real cleanup once, with the most shards (it changes the bucket).
	ps = append(ps, phase{name: "cleanup", args: []string{"cleanup", "--json", "--grace", "0s"}, shards: cfg.Shards[len(cfg.Shards)-1]},
		phase{name: "ledger compact", args: []string{"ledger", "compact", "--json", "--older-than", "0s", "--yes"}, shards: 1},
		phase{name: "status", args: []string{"status", "--json"}, shards: 1})
	return ps
}

// runPhase starts the phase's processes at once (shard i of n each, when n
// is more than 1) and waits for all of them.
func runPhase(ctx context.Context, bin string, env []string, p phase) (Measure, error) {
	m := Measure{Phase: p.name, Shards: p.shards}
	type result struct {
		i    int
		out  string
		code int
		ru   *syscall.Rusage
		err  error
	}
	results := make(chan result, p.shards)
	start := time.Now()
	for i := range p.shards {
		args := p.args
		if p.shards > 1 {
			args = append(append([]string{}, args...), "--shard", strconv.Itoa(i)+"/"+strconv.Itoa(p.shards))
		}
		go func() {
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = append(os.Environ(), env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			r := result{i: i, out: stdout.String()}
			if cmd.ProcessState != nil {
				r.code = cmd.ProcessState.ExitCode()
				r.ru, _ = cmd.ProcessState.SysUsage().(*syscall.Rusage)
			}
			var exit *exec.ExitError
			if err != nil && !(errors.As(err, &exit) && okCode(p.okCodes, r.code)) {
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
		if r.ru != nil {
			m.PeakRSS = max(m.PeakRSS, r.ru.Maxrss*1024) // KiB on Linux
			m.CPU += time.Duration(r.ru.Utime.Nano() + r.ru.Stime.Nano())
		}
	}
	m.Wall = time.Since(start)
	return m, errors.Join(errs...)
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
