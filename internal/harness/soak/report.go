package soak

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
)

func hashBytes(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Report is one run's figures and verdict.
type Report struct {
	Seed     uint64        `json:"seed"`
	Server   string        `json:"s3_server"`
	Duration time.Duration `json:"duration"`
	Total    time.Duration `json:"total"`
	Finish   time.Duration `json:"finish"`
	Replay   string        `json:"replay"`
	Dir      string        `json:"dir"`

	Photos   PhotoCounts       `json:"photos"`
	App      appsim.Summary    `json:"app"`
	S3       faultproxy.Counts `json:"s3"`
	Net      map[string]int64  `json:"tcp_faults"`
	Fleet    FleetCounts       `json:"fleet"`
	Operator map[string]*Count `json:"operator"`
	Outcome  map[string]int    `json:"outcome"`
	Verify   *VerifySummary    `json:"verify"`
	Schedule Config            `json:"schedule"`
	Notes    []string          `json:"notes,omitempty"`
	Failed   map[string]int    `json:"ledger_failed_by_reason"`
	// FailureLog counts keymigrate.failures rows by kind and reason;
	// DLQSeen is how many messages were seen in the DLQ before redrives.
	FailureLog map[string]int `json:"failure_log"`
	DLQSeen    int            `json:"dlq_seen_before_redrives"`
	// Legacy counts the legacy objects after the final cleanup by what
	// cleanup_accounted found them to be (deleted, or kept and why).
	Legacy map[string]int `json:"legacy_objects_after_cleanup"`
	// Lost is what the ledger's history said at the first drain of
	// messages never delivered (settled_before_rerun), healed or not.
	Lost LostMessages `json:"lost_messages_at_first_drain"`
	// Copies counts the copies copies_keep_headers compared: all, multipart
	// (assembled from part copies), with tags, with Expires, with a
	// checksum compared.
	Copies map[string]int `json:"copies_compared"`
	// CopyPaths counts the committed object moves (and their photos) by
	// the path that proved them: copy_first (the copy's response, proven by
	// the read of its source made after it) and careful (everything else).
	CopyPaths map[string]int         `json:"moves_by_copy_path"`
	ByInv     map[string]int         `json:"violations_by_invariant"`
	Count     int                    `json:"violation_count"`
	Listed    []Violation            `json:"violations"`
	Samples   map[string][]Violation `json:"-"`
}

// PhotoCounts are the photos of the run.
type PhotoCounts struct {
	Seeded int `json:"seeded"`
	Total  int `json:"total"`
	Live   int `json:"live"`
}

// FleetCounts are the process faults.
type FleetCounts struct {
	Started int `json:"workers_started"`
	Killed  int `json:"sigkill"`
	Termed  int `json:"sigterm"`
	Scaled  int `json:"rescaled"`
	// StartedByPath counts the workers started on each copy path.
	StartedByPath map[string]int `json:"workers_started_by_path,omitempty"`
}

// VerifySummary is what `migratectl verify --deep` said.
type VerifySummary struct {
	Rows         int64            `json:"rows_checked"`
	Objects      int64            `json:"objects_checked"`
	DeepCompared int64            `json:"deep_compared"`
	Problems     map[string]int64 `json:"problems_by_kind"`
	Orphans      int64            `json:"orphans"`
}

// OK reports whether no invariant was violated.
func (r *Report) OK() bool { return r.Count == 0 }

func (r *Runner) report(start, finishStart time.Time) *Report {
	ids := r.sim.Model().IDs()
	rep := &Report{
		Seed: r.cfg.Seed, Server: r.server, Duration: r.cfg.Duration, Total: time.Since(start), Finish: time.Since(finishStart), Dir: r.dir,
		App: r.sim.Stats().Summary(), S3: r.fp.Counts(), Net: r.nf.Counts(), Schedule: r.cfg,
		Fleet:    r.fleet.Counts(),
		Operator: map[string]*Count{},
		Photos:   PhotoCounts{Seeded: r.cfg.Photos, Total: len(ids)},
		Failed:   map[string]int{},
	}
	for _, id := range ids {
		if st, _ := r.sim.Model().State(id); !st.Deleted {
			rep.Photos.Live++
		}
	}
	r.mu.Lock()
	for k, v := range r.operator {
		c := *v
		rep.Operator[k] = &c
	}
	rep.Notes = append(rep.Notes, r.notes...)
	rep.Lost = r.lost
	r.mu.Unlock()
	return rep
}

// finalise takes the violations into the report.
func (rep *Report) finaliseWith(vs []Violation) {
	rep.ByInv = map[string]int{}
	for _, inv := range Invariants {
		rep.ByInv[inv] = 0
	}
	rep.Samples = map[string][]Violation{}
	for _, v := range vs {
		rep.ByInv[v.Invariant]++
		if len(rep.Samples[v.Invariant]) < 10 {
			rep.Samples[v.Invariant] = append(rep.Samples[v.Invariant], v)
		}
	}
	rep.Count = len(vs)
	rep.Listed = vs
	if len(rep.Listed) > 500 {
		rep.Listed = rep.Listed[:500]
	}
}

// JSON writes the report as JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// Table writes the summary table.
func (r *Report) Table(w io.Writer) {
	row := func(k, v string) { fmt.Fprintf(w, "| %s | %s |\n", k, v) }
	fmt.Fprintf(w, "| soak | seed %d on %s |\n|---|---|\n", r.Seed, r.Server)
	row("duration", fmt.Sprintf("%s of migration and faults (+%s baseline, %s to finish); %s in all", r.Duration, r.Schedule.Baseline, r.Finish.Round(time.Second), r.Total.Round(time.Second)))
	row("photos", fmt.Sprintf("%d seeded legacy, %d at the end (%d live)", r.Photos.Seeded, r.Photos.Total, r.Photos.Live))
	var ops []string
	for _, op := range sortedKeys(r.App.Ops) {
		c := r.App.Ops[appsim.Op(op)]
		s := fmt.Sprintf("%s %d", op, c.Done)
		if c.Failed > 0 {
			s += fmt.Sprintf(" (%d failed)", c.Failed)
		}
		ops = append(ops, s)
	}
	row("application operations", strings.Join(ops, ", "))
	var verdicts []string
	for _, v := range sortedKeys(r.App.Reads) {
		verdicts = append(verdicts, fmt.Sprintf("%s %d", v, r.App.Reads[appsim.Verdict(v)]))
	}
	row("reads", fmt.Sprintf("%d (%s); %d retried once from the row", r.App.TotalReads(), strings.Join(verdicts, ", "), r.App.Retried))
	if len(r.App.Proxied) > 0 {
		var through []string
		for _, k := range sortedKeys(r.App.Proxied) {
			c := r.App.Proxied[k]
			s := fmt.Sprintf("%s %d", k, c.Done)
			if c.Unavailable > 0 {
				s += fmt.Sprintf(" (+%d unavailable after retries)", c.Unavailable)
			}
			if c.Failed > 0 {
				s += fmt.Sprintf(" (+%d failed, %d of them landed)", c.Failed, c.Landed)
			}
			through = append(through, s)
		}
		row("application through the S3 fault proxy", strings.Join(through, ", ")+"; unavailable reads are counted, not violations")
	} else if r.Schedule.AppDirectOnly {
		row("application through the S3 fault proxy", "none (-soak.app-direct-only)")
	}
	for _, phase := range []string{"baseline", "migration", "finish"} {
		if l, ok := r.App.Latency[phase]; ok {
			label := map[string]string{"baseline": "read latency without the migration", "migration": "read latency with the migration and faults", "finish": "read latency while draining and cleaning up"}[phase]
			row(label, fmt.Sprintf("p50 %s, p99 %s (%d reads)", ms(l.P50), ms(l.P99), l.Count))
		}
	}
	var faults []string
	for _, f := range faultproxy.Faults {
		faults = append(faults, fmt.Sprintf("%s %d", f, r.S3.Faults[f]))
	}
	row("S3 faults injected", fmt.Sprintf("%s; of %d requests (%s)", strings.Join(faults, ", "), r.S3.Total(), r.S3.String()))
	var net []string
	for _, k := range sortedKeys(r.Net) {
		net = append(net, fmt.Sprintf("%s %d", k, r.Net[k]))
	}
	row("TCP faults (Postgres, SQS)", strings.Join(net, ", "))
	row("process faults", fmt.Sprintf("workers SIGKILLed %d, SIGTERMed %d, rescaled %d, started %d; producer killed %d", r.Fleet.Killed, r.Fleet.Termed, r.Fleet.Scaled, r.Fleet.Started, countOK(r.Operator["producer_killed"])))
	var opsDone []string
	for _, k := range sortedKeys(r.Operator) {
		c := r.Operator[k]
		s := fmt.Sprintf("%s %d", k, c.OK)
		if c.Failed > 0 {
			s += fmt.Sprintf(" (+%d failed)", c.Failed)
		}
		opsDone = append(opsDone, s)
	}
	row("operator actions", strings.Join(opsDone, ", "))
	var out []string
	for _, k := range sortedKeys(r.Outcome) {
		out = append(out, fmt.Sprintf("%s %d", k, r.Outcome[k]))
	}
	row("photos at the end", strings.Join(out, ", "))
	var failed []string
	for _, k := range sortedKeys(r.Failed) {
		failed = append(failed, fmt.Sprintf("%s %d", k, r.Failed[k]))
	}
	row("ledger: failed by reason", strings.Join(failed, ", "))
	var flog []string
	for _, k := range sortedKeys(r.FailureLog) {
		flog = append(flog, fmt.Sprintf("%s %d", k, r.FailureLog[k]))
	}
	row("failure log (keymigrate.failures)", fmt.Sprintf("%s; %d messages seen in the DLQ before redrives", strings.Join(flog, ", "), r.DLQSeen))
	var legacy []string
	for _, k := range sortedKeys(r.Legacy) {
		legacy = append(legacy, fmt.Sprintf("%s %d", k, r.Legacy[k]))
	}
	row("legacy objects after the final cleanup", strings.Join(legacy, ", "))
	row("messages lost before the first drain (healed or not)", r.Lost.String())
	var copies []string
	for _, k := range sortedKeys(r.Copies) {
		copies = append(copies, fmt.Sprintf("%s %d", k, r.Copies[k]))
	}
	row("copies compared with their legacy objects", strings.Join(copies, ", "))
	var started []string
	for _, k := range sortedKeys(r.Fleet.StartedByPath) {
		started = append(started, fmt.Sprintf("%s %d", k, r.Fleet.StartedByPath[k]))
	}
	possible := ""
	if r.CopyPaths["copy_first_possible"] == 0 {
		possible = " (the S3 probe says this server does not allow copy first)"
	}
	row("copy paths", fmt.Sprintf("copy-first mode %s%s; workers started: %s; committed moves: copy first %d objects of %d photos, careful %d objects of %d photos",
		r.Schedule.CopyFirst, possible, strings.Join(started, ", "), r.CopyPaths["copy_first_objects"], r.CopyPaths["copy_first_photos"], r.CopyPaths["careful_objects"], r.CopyPaths["careful_photos"]))
	if r.Verify != nil {
		row("verify --deep", fmt.Sprintf("%d rows, %d moved objects, %d deep comparisons, problems %v", r.Verify.Rows, r.Verify.Objects, r.Verify.DeepCompared, r.Verify.Problems))
	}
	var inv []string
	for _, k := range Invariants {
		inv = append(inv, fmt.Sprintf("%s %d", k, r.ByInv[k]))
	}
	row("**invariant violations**", fmt.Sprintf("**%d** (%s)", r.Count, strings.Join(inv, ", ")))
}

// Violations writes the first violations of each invariant.
func (r *Report) Violations(w io.Writer) {
	for _, inv := range Invariants {
		for _, v := range r.Samples[inv] {
			fmt.Fprintf(w, "  %s photo=%s key=%s: %s\n", v.Invariant, v.PhotoID, v.Key, v.Detail)
		}
		if n := r.ByInv[inv]; n > len(r.Samples[inv]) {
			fmt.Fprintf(w, "  %s: … %d more\n", inv, n-len(r.Samples[inv]))
		}
	}
}

func countOK(c *Count) int {
	if c == nil {
		return 0
	}
	return c.OK
}

func sortedKeys[K ~string, V any](m map[K]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	return keys
}
