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
func WriteTable(w io.Writer, ms []Measure) {
	fmt.Fprintln(w, "| phase | shards | photos | wall | wall per 10^6 | CPU per 10^6 | peak RSS | S3 requests per legacy object | PG transactions per 10^6 | PG rows read per 10^6 | temp bytes | full scans | exit |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, m := range ms {
		per := 1e6 / float64(m.Photos)
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %d MiB | %s | %.0f | %.3g | %d | %s | %v |\n",
			m.Phase, m.Shards, m.Photos, m.Wall.Round(time.Millisecond), m.WallPerMillion().Round(time.Millisecond),
			time.Duration(float64(m.CPU)*per).Round(time.Millisecond), m.PeakRSS>>20, requestMix(m),
			float64(m.Postgres.Transactions)*per, float64(m.Postgres.RowsReturned+m.Postgres.RowsFetched)*per,
			m.Postgres.TempBytes, scans(m.Postgres.FullScans), m.ExitCodes)
	}
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
