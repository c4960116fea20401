package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FleetSpec is one fleet run: Workers processes of the worker binary, each
// with --concurrency Concurrency and the extra flags Args, started with
// --drain so that they exit once the queue is empty.
type FleetSpec struct {
	Workers     int
	Concurrency int
	Args        []string
	// Profile: each worker writes a Go CPU profile beside its log
	// (<label>-worker-N.cpu.prof), for `go tool pprof`.
	Profile bool
}

// Procs is what the fleet's processes used, from the kernel's accounting of
// each child when it was reaped.
type Procs struct {
	Wall    time.Duration // first start to last exit
	CPU     time.Duration // user + system, all processes
	PeakRSS int64         // bytes, the largest process's peak resident set
}

// Metric names the fleet's /metrics are read for.
const (
	metricThrottled = "keymigrate_s3_throttled_total"
	metricRateLimit = "keymigrate_s3_rate_limit"
)

// Sample is the fleet's S3 pacing at one moment: throttling responses so far
// and the sum of the workers' S3 rate limits (0: none of them limited), read
// from the workers' /metrics; and the proxy's counters so far, cumulative
// since the proxy started (runs take differences).
type Sample struct {
	At        time.Time
	Throttled float64
	RateLimit float64
	// Requests the proxy received, those it Forwarded to the server, and the
	// SlowDowns and InternalErrors it answered itself.
	Requests, Forwarded, SlowDowns, InternalErrors int64
}

// runFleet starts spec's workers with env, waits for all of them to exit, and
// returns their resource use and, sampled every second from each worker's
// /metrics, their S3 throttling and rate limits; probe, if not nil, adds to
// each sample what the proxy counted. A worker that exits with an error fails
// the run; its log is in logDir.
func runFleet(ctx context.Context, bin string, env []string, logDir, label string, spec FleetSpec, probe func(*Sample)) (Procs, []Sample, error) {
	type worker struct {
		cmd    *exec.Cmd
		listen string
		log    string
	}
	var workers []*worker
	defer func() { // only when a later worker failed to start
		for _, w := range workers {
			if w.cmd.ProcessState == nil {
				_ = w.cmd.Process.Kill()
				_ = w.cmd.Wait()
			}
		}
	}()
	start := time.Now()
	for i := range spec.Workers {
		listen, err := freeAddr()
		if err != nil {
			return Procs{}, nil, err
		}
		logPath := filepath.Join(logDir, fmt.Sprintf("%s-worker-%d.log", label, i+1))
		logf, err := os.Create(logPath)
		if err != nil {
			return Procs{}, nil, err
		}
		args := append([]string{"--drain", "--wait-time", "1s", "--concurrency", strconv.Itoa(spec.Concurrency), "--listen", listen}, spec.Args...)
		if spec.Profile {
			args = append(args, "--cpu-profile", strings.TrimSuffix(logPath, ".log")+".cpu.prof")
		}
		// Interrupted, the workers stop as they would in production.
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = time.Minute
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Start()
		logf.Close() // the child holds its own descriptor
		if err != nil {
			return Procs{}, nil, fmt.Errorf("start %s: %w", bin, err)
		}
		workers = append(workers, &worker{cmd: cmd, listen: listen, log: logPath})
	}

	sampleCtx, stopSampling := context.WithCancel(ctx)
	addrs := make([]string, len(workers))
	for i, w := range workers {
		addrs[i] = w.listen
	}
	samples := make(chan []Sample, 1)
	go func() { samples <- sample(sampleCtx, addrs, probe) }()

	var p Procs
	var errs []error
	for _, w := range workers {
		err := w.cmd.Wait()
		if ru, ok := w.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.CPU += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			p.PeakRSS = max(p.PeakRSS, ru.Maxrss*1024) // KiB on Linux
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("worker (log %s): %w", w.log, err))
		}
	}
	p.Wall = time.Since(start)
	stopSampling()
	return p, <-samples, errors.Join(errs...)
}

// freeAddr picks a free loopback port for a worker's --listen.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// sample reads every worker's /metrics once a second until ctx ends, and
// calls probe (if not nil) on each sample. A worker that has exited keeps the
// last values read from it, so the last second of a worker's throttling can
// be missing.
func sample(ctx context.Context, addrs []string, probe func(*Sample)) []Sample {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	last := make([]map[string]float64, len(addrs))
	var out []Sample
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
		var wg sync.WaitGroup
		for i, a := range addrs {
			wg.Go(func() {
				if m, err := scrape(ctx, client, "http://"+a+"/metrics"); err == nil {
					last[i] = m
				}
			})
		}
		wg.Wait()
		s := Sample{At: time.Now()}
		for _, m := range last {
			s.Throttled += m[metricThrottled]
			s.RateLimit += m[metricRateLimit]
		}
		if probe != nil {
			probe(&s)
		}
		out = append(out, s)
	}
}

// scrape reads a Prometheus text exposition and sums each metric's series.
func scrape(ctx context.Context, client *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseMetrics(bufio.NewScanner(resp.Body))
}

// parseMetrics sums the values of every series of each metric in a Prometheus
// text exposition ("name{labels} value" lines; comments skipped).
func parseMetrics(sc *bufio.Scanner) (map[string]float64, error) {
	m := map[string]float64{}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest) // value [timestamp]
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		m[name] += v
	}
	return m, sc.Err()
}
