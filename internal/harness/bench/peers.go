package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"
)

// rawCopy copies bucket/key to bucket/prefix+key for every key with a plain
// CopyObject (no HEAD, no condition, no verification), concurrency at a time,
// and returns how long it took: the fastest a client of this SDK can move
// these objects.
func rawCopy(ctx context.Context, client *s3.Client, bucket string, keys []string, prefix string, concurrency int) (time.Duration, error) {
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, k := range keys {
		g.Go(func() error {
			_, err := client.CopyObject(gctx, &s3.CopyObjectInput{
				Bucket: aws.String(bucket), Key: aws.String(prefix + k), CopySource: aws.String(bucket + "/" + k),
			})
			if err != nil {
				return fmt.Errorf("copy %s: %w", k, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("raw copy loop: %w", err)
	}
	return time.Since(start), nil
}

// s5cmdCopy runs `s5cmd run` over a file of one server-side `cp` per key
// (bucket/key to bucket/prefix+key) with --numworkers workers against
// endpoint, and returns its wall time and resource use. Its output is in
// logDir.
func s5cmdCopy(ctx context.Context, bin, endpoint, bucket string, keys []string, prefix string, workers int, logDir string) (Procs, error) {
	cmdFile := filepath.Join(logDir, "s5cmd-commands.txt")
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "cp %s %s\n", shellQuote("s3://"+bucket+"/"+k), shellQuote("s3://"+bucket+"/"+prefix+k))
	}
	if err := os.WriteFile(cmdFile, []byte(b.String()), 0o644); err != nil {
		return Procs{}, err
	}
	logPath := filepath.Join(logDir, "s5cmd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return Procs{}, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "--endpoint-url", endpoint, "--numworkers", strconv.Itoa(workers), "--log", "error", "run", cmdFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	err = cmd.Run()
	p := Procs{Wall: time.Since(start)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			p.PeakRSS = ru.Maxrss * 1024
		}
	}
	if err != nil {
		return p, fmt.Errorf("s5cmd (log %s): %w", logPath, err)
	}
	return p, nil
}

// shellQuote quotes s for s5cmd's command files, which it splits like a shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
