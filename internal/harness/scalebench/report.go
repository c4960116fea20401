package scalebench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// WriteTable writes the measures as a Markdown table: per phase, the wall
// time per 10^6 photos, the S3 requests per legacy object by operation, the
// Postgres work per 10^6 photos, full scans of the big tables, peak RSS and
// CPU.
//
// A phase stopped at Config.TimeLimit did a part of unknown size: its
// figures per 10^6 and per object are not given ("stopped"), its totals are.
func WriteTable(w io.Writer, ms []Measure) {
	fmt.Fprintln(w, "| phase | shards | photos | wall | wall per 10^6 | CPU per 10^6 | peak RSS | RSS by quarter (MiB) | S3 requests per legacy object | PG transactions per 10^6 | PG rows read per 10^6 | temp bytes | full scans | exit |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, m := range ms {
		per := 1e6 / float64(m.Photos)
		wallPer, cpuPer := m.WallPerMillion().Round(time.Millisecond).String(), time.Duration(float64(m.CPU)*per).Round(time.Millisecond).String()
		mix, txPer, rowsPer := requestMix(m), fmt.Sprintf("%.0f", float64(m.Postgres.Transactions)*per), fmt.Sprintf("%.3g", float64(m.Postgres.RowsReturned+m.Postgres.RowsFetched)*per)
		if m.Stopped {
			wallPer, cpuPer, txPer, rowsPer = "stopped", fmt.Sprintf("stopped (%s in all)", m.CPU.Round(time.Second)), fmt.Sprintf("stopped (%d in all)", m.Postgres.Transactions), "stopped"
			mix = fmt.Sprintf("stopped (%d in all)", sum(m.Requests))
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s%s | %s | %s | %d MiB | %s | %s | %s | %s | %d | %s | %v |\n",
			m.Phase, m.Shards, m.Photos, m.Wall.Round(time.Millisecond), stoppedMark(m), wallPer, cpuPer,
			m.PeakRSS>>20, mib(m.RSSQuarters), mix, txPer, rowsPer,
			m.Postgres.TempBytes, scans(m.Postgres.FullScans), m.ExitCodes)
	}
}

func stoppedMark(m Measure) string {
	if m.Stopped {
		return " (stopped)"
	}
	return ""
}

func mib(q [4]int64) string {
	return fmt.Sprintf("%d / %d / %d / %d", q[0]>>20, q[1]>>20, q[2]>>20, q[3]>>20)
}

func requestMix(m Measure) string {
	if len(m.Requests) == 0 {
		return "none"
	}
	ops := make([]string, 0, len(m.Requests))
	for op := range m.Requests {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	parts := make([]string, 0, len(ops))
	for _, op := range ops {
		parts = append(parts, fmt.Sprintf("%s %.3g", op, m.RequestsPerObject(op)))
	}
	return strings.Join(parts, ", ")
}

func scans(s map[string]int64) string {
	if len(s) == 0 {
		return "none"
	}
	ts := make([]string, 0, len(s))
	for t, n := range s {
		ts = append(ts, fmt.Sprintf("%s %d", t, n))
	}
	sort.Strings(ts)
	return strings.Join(ts, ", ")
}
