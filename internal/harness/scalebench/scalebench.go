// Package scalebench measures keymigrate's operator phases at scale: it loads
// a photos table and the ledger with synths3's SQL loader, serves the bucket
// with synths3's synthetic S3 endpoint, runs the real migratectl binary for
// each phase (plan before the migration; status, verify, cleanup and ledger
// compact after it), and reports per phase the S3 requests by operation, the
// Postgres work (transactions, rows read, temp bytes, full scans of the big
// tables), the peak RSS and CPU of the processes, and the wall time per 10^6
// photos. It is a benchmark (`make scale-bench`, docs/scale.md), not a test
// of correctness: the synthetic endpoint is a load stand-in (see
// docs/scale-harness.md). Its test runs it at 10^5 photos.
package scalebench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keymigrate/keymigrate/internal/harness/synths3"
)

// Config says what to measure.
type Config struct {
	// AdminURL is a database on the Postgres server where each stage
	// creates its own database (and drops it unless Keep).
	AdminURL string
	// Migratectl is the built migratectl binary.
	Migratectl string
	Photos     int64
	IDType     synths3.IDType
	// Shards are the shard counts verify and cleanup run with (each its own
	// measurement; 1 runs without --shard).
	Shards []int
	// Stages to run: "legacy" (plan) and "finished" (status, verify,
	// cleanup, compact). Default both.
	Stages []string
	// SkipDryRun leaves out the cleanup dry runs (the CI test's time).
	SkipDryRun bool
	// Sample, when more than zero, runs the phases that HEAD every object
	// (verify and cleanup without a report) over 1/Sample of the ledger
	// only (--shard), on the whole of the loaded tables: what 10^7 rows
	// cost per 10^6 without hours of HEADs on one machine. Their figures
	// are per photo of that part.
	Sample int
	// Inventory writes an S3 Inventory report (CSV, AWS's layout) of the
	// whole synthetic bucket from its listing, after the load, and adds
	// the phases that read one: plan --inventory, inventory load, verify
	// --inventory (whole ledger), cleanup --dry-run --inventory.
	Inventory bool
	// Only, when not empty, keeps the phases whose name starts with one of
	// these (e.g. "status", "verify", "cleanup --dry-run"): a 10^7 run
	// without the phases that take hours here.
	Only []string
	// SkipListing leaves out plan's listing of the legacy prefixes (with
	// Inventory, plan --inventory still runs).
	SkipListing bool
	// Progress receives a line per step (nil: none).
	Progress io.Writer
	Keep     bool
	// TempDir holds the inventory report ("" is os.TempDir()).
	TempDir string
	// PGOptions are Postgres settings for the phases' sessions, e.g.
	// "-c session_preload_libraries=auto_explain -c
	// auto_explain.log_min_duration=200ms" to log the plans of slow
	// statements (the server's log, superuser only).
	PGOptions string
	// TimeLimit, when more than zero, stops every phase's processes once
	// they have run that long (SIGTERM): a window of phases that take
	// hours here, on the whole of the loaded tables, for their memory over
	// time. A stopped phase's work is a part of unknown size: its figures
	// per 10^6 are not given and the projection leaves it out.
	TimeLimit time.Duration
	// ProfileDir, when set, receives a Go CPU profile of every process
	// (KEYMIGRATE_CPU_PROFILE) and of its heap near its peak
	// (KEYMIGRATE_HEAP_PROFILE), named by phase and shard.
	ProfileDir string
}

// Measure is what one phase cost.
type Measure struct {
	Phase  string `json:"phase"`
	Shards int    `json:"shards"`
	Photos int64  `json:"photos"`
	// Objects are the bucket's legacy objects (the denominator of the
	// per-object request figures).
	Objects int64         `json:"objects"`
	Wall    time.Duration `json:"wall_ns"`
	// CPU is the user and system time of every process of the phase.
	CPU time.Duration `json:"cpu_ns"`
	// PeakRSS is the largest resident set of any one process, in bytes.
	PeakRSS int64 `json:"peak_rss"`
	// RSSQuarters are that process's largest resident set in each quarter
	// of its life, in bytes: rising quarters are memory that grows with
	// the work done.
	RSSQuarters [4]int64 `json:"rss_quarters"`
	// Stopped: the phase ran into Config.TimeLimit and was stopped.
	Stopped  bool             `json:"stopped,omitempty"`
	Requests map[string]int64 `json:"s3_requests"`
	Postgres PGWork           `json:"postgres"`
	// ExitCodes of the processes (verify exits 2 on a failed gate).
	ExitCodes []int `json:"exit_codes"`
	// Output is the first process's standard output (its --json report).
	Output string `json:"output"`
}

// WallPerMillion is the wall time per 10^6 photos.
func (m Measure) WallPerMillion() time.Duration {
	return time.Duration(float64(m.Wall) * 1e6 / float64(m.Photos))
}

// RequestsPerObject is the phase's S3 requests of one operation per legacy
// object.
func (m Measure) RequestsPerObject(op string) float64 {
	return float64(m.Requests[op]) / float64(m.Objects)
}

// Run loads each stage and measures its phases.
func Run(ctx context.Context, cfg Config) ([]Measure, error) {
	if len(cfg.Shards) == 0 {
		cfg.Shards = []int{1}
	}
	if len(cfg.Stages) == 0 {
		cfg.Stages = []string{"legacy", "finished"}
	}
	ks, err := synths3.New(synths3.Config{Photos: cfg.Photos, IDType: cfg.IDType})
	if err != nil {
		return nil, err
	}
	var out []Measure
	for _, stage := range cfg.Stages {
		var ms []Measure
		switch stage {
		case "legacy":
			ms, err = runStage(ctx, cfg, ks, synths3.LegacyState, synths3.Legacy, legacyPhases(cfg))
		case "finished":
			ms, err = runStage(ctx, cfg, ks, synths3.FinishedState, synths3.Migrated, finishedPhases(cfg))
		default:
			return out, fmt.Errorf("unknown stage %q: legacy or finished", stage)
		}
		out = append(out, ms...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// runStage loads ks in state into a database of its own, serves the bucket
// in mode, and measures phases one after another.
func runStage(ctx context.Context, cfg Config, ks *synths3.Keyspace, state synths3.State, mode synths3.Mode, phases []phase) ([]Measure, error) {
	db, err := createDatabase(ctx, cfg.AdminURL, fmt.Sprintf("kmscale_%s_%d", state, time.Now().UnixNano()))
	if err != nil {
		return nil, err
	}
	if !cfg.Keep {
		defer db.drop()
	}
	cfg.progress("load %d photos (%s ids, %s state)", ks.Photos(), ks.Config().IDType, state)
	res, err := synths3.Load(ctx, db.url, ks, synths3.LoadOptions{State: state})
	if err != nil {
		return nil, fmt.Errorf("load %s state: %w", state, err)
	}
	cfg.progress("loaded in %.0fs", res.Seconds["total"])
	if err := db.addApplicationIndexes(ctx); err != nil {
		return nil, err
	}
	srv := synths3.NewServer(ks, synths3.Options{Mode: mode})
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	endpoint, err := srv.Start(addr)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	env := childEnv(withPGOptions(db.url, cfg.PGOptions), endpoint, srv.Bucket())
	objects := ks.Totals().Objects
	var out []Measure
	manifest := ""
	for _, p := range phases {
		if !cfg.keeps(p.name) {
			continue
		}
		if p.inventory && manifest == "" {
			cfg.progress("write an inventory report of the bucket (harness, from its listing)")
			var root string
			var n int
			var took time.Duration
			manifest, root, n, took, err = writeInventory(ctx, srv, endpoint, cfg.TempDir)
			if root != "" && !cfg.Keep {
				defer os.RemoveAll(root)
			}
			if err != nil {
				return out, err
			}
			cfg.progress("  %d objects in %s", n, took.Round(time.Second))
		}
		p.args = withInventory(p.args, manifest)
		cfg.progress("%s (%d process(es))", p.name, p.shards)
		if p.restartFirst {
			if err := restart(ctx, cfg.Migratectl, env, p); err != nil {
				return out, err
			}
		}
		srv.ResetStats()
		before, err := db.work(ctx)
		if err != nil {
			return out, err
		}
		m, err := runPhase(ctx, cfg.Migratectl, env, p, cfg.ProfileDir, cfg.TimeLimit)
		if err != nil {
			return out, fmt.Errorf("%s: %w", p.name, err)
		}
		after, err := db.work(ctx)
		if err != nil {
			return out, err
		}
		// A sampled phase covers a fraction of the photos (their shards
		// balance by hash: the fraction is approximate, within a percent).
		m.Photos, m.Objects = int64(float64(ks.Photos())*p.fraction()), int64(float64(objects)*p.fraction())
		m.Requests, m.Postgres = srv.Stats().Requests, after.minus(before)
		out = append(out, m)
		cfg.progress("  %s%s, peak RSS %d MiB (quarters %s), %d S3 requests", m.Wall.Round(time.Millisecond), stoppedMark(m), m.PeakRSS>>20, mib(m.RSSQuarters), sum(m.Requests))
	}
	return out, nil
}

// keeps reports whether the phase named name is to run (Config.Only).
func (cfg Config) keeps(name string) bool {
	if len(cfg.Only) == 0 {
		return true
	}
	for _, o := range cfg.Only {
		if strings.HasPrefix(name, o) {
			return true
		}
	}
	return false
}

// withInventory replaces the inventoryLocation token of args by manifest.
func withInventory(args []string, manifest string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == inventoryLocation {
			a = manifest
		}
		out[i] = a
	}
	return out
}

func (cfg Config) progress(format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "scale-bench: "+format+"\n", args...)
	}
}

// freeAddr picks a free port below 32768 (the ephemeral range collides with
// outgoing connections under load).
func freeAddr() (string, error) {
	for port := 17100; port < 17200; port++ {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("no free port in 17100-17199 for the synthetic S3 endpoint")
}

// withPGOptions adds Postgres settings for the phases' sessions to a
// connection URL (the startup packet's options).
func withPGOptions(databaseURL, options string) string {
	if options == "" {
		return databaseURL
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		return databaseURL
	}
	q := u.Query()
	q.Set("options", options)
	// %20, not "+": pgx reads the query's "+" literally.
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String()
}

func childEnv(databaseURL, endpoint, bucket string) []string {
	return []string{
		"DATABASE_URL=" + databaseURL,
		"KEYMIGRATE_BUCKET=" + bucket,
		"AWS_ENDPOINT_URL_S3=" + endpoint,
		"AWS_ACCESS_KEY_ID=synthetic", "AWS_SECRET_ACCESS_KEY=synthetic", "AWS_REGION=us-east-1",
		"KEYMIGRATE_LOG_FORMAT=json", "KEYMIGRATE_LOG_LEVEL=warn",
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
