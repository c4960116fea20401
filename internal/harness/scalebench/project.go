package scalebench

import (
	"fmt"
	"io"
	"math"
	"time"
)

// Target is the production the measures are projected to: the arithmetic of
// docs/scale.md, done by the bench so that the table and the projection come
// from the same run.
type Target struct {
	Photos int64
	// Machines run the phase at once (shards); Cores each.
	Machines, Cores int
	// Latency of one S3 request on AWS, and the requests each machine keeps
	// in flight (the phase's --concurrency).
	Latency  time.Duration
	InFlight int
	// PGTPS is the statements per second the database gives this phase
	// beside the fleet.
	PGTPS float64
}

// DefaultTarget is the projection docs/scale.md states: 10^9 photos, 20 ms
// a request, 64 in flight per machine of 2 cores, a database giving the phase
// 5,000 statements per second.
var DefaultTarget = Target{Photos: 1_000_000_000, Machines: 8, Cores: 2, Latency: 20 * time.Millisecond, InFlight: 64, PGTPS: 5000}

// prices are us-east-1 list prices in dollars per 1,000 requests (S3
// Standard; DELETE is free; DeleteObjects is a POST).
var prices = map[string]float64{
	"HeadObject": 0.0004, "GetObject": 0.0004,
	"ListObjectsV2": 0.005, "CopyObject": 0.005, "PutObject": 0.005, "DeleteObjects": 0.005,
	"UploadPartCopy": 0.005, "CreateMultipartUpload": 0.005, "CompleteMultipartUpload": 0.005,
}

// Projection is one phase at the target's scale.
type Projection struct {
	Phase                 string
	Requests              float64
	Dollars               float64
	S3Bound, CPUBound     time.Duration
	PGBound, Wall         time.Duration
	Transactions, CPUSecs float64
}

// Project scales m linearly in photos (every phase is a pass over photos or
// objects; the table shows the per-10^6 figures are flat) and bounds its
// duration by S3 latency, CPU and the database, whichever is slowest.
func Project(m Measure, t Target) Projection {
	scale := float64(t.Photos) / float64(m.Photos)
	p := Projection{Phase: fmt.Sprintf("%s (%d shards measured)", m.Phase, m.Shards)}
	for op, n := range m.Requests {
		p.Requests += float64(n) * scale
		p.Dollars += float64(n) * scale * prices[op] / 1000
	}
	perMachine := float64(t.InFlight) / t.Latency.Seconds() // requests/s
	p.S3Bound = seconds(p.Requests / perMachine / float64(t.Machines))
	p.CPUSecs = m.CPU.Seconds() * scale
	p.CPUBound = seconds(p.CPUSecs / float64(t.Machines*t.Cores))
	p.Transactions = float64(m.Postgres.Transactions) * scale
	p.PGBound = seconds(p.Transactions / t.PGTPS)
	p.Wall = max(p.S3Bound, p.CPUBound, p.PGBound)
	return p
}

func seconds(s float64) time.Duration {
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// WriteProjection writes the projection of every measure to t as a Markdown
// table.
func WriteProjection(w io.Writer, ms []Measure, t Target) {
	fmt.Fprintf(w, "\nProjected to %d photos on %d machines (%d cores each, %d S3 requests in flight at %s each, the database giving %.0f statements/s):\n\n",
		t.Photos, t.Machines, t.Cores, t.InFlight, t.Latency, t.PGTPS)
	fmt.Fprintln(w, "| phase | S3 requests | S3 dollars | S3-bound | CPU-bound | Postgres-bound | days |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, m := range ms {
		if m.Stopped {
			continue // a part of unknown size: nothing to project from
		}
		p := Project(m, t)
		fmt.Fprintf(w, "| %s | %.3g | $%.0f | %s | %s | %s | %.2f |\n", p.Phase, p.Requests, p.Dollars,
			hours(p.S3Bound), hours(p.CPUBound), hours(p.PGBound), p.Wall.Hours()/24)
	}
}

func hours(d time.Duration) string { return fmt.Sprintf("%.1f h", d.Hours()) }
