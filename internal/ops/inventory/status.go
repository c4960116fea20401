package inventory

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// Report is a report as `inventory status` shows it.
type Report struct {
	ID           int64      `json:"id"`
	Location     string     `json:"location"`
	SourceBucket string     `json:"source_bucket"`
	Format       string     `json:"format"`
	CreatedAt    time.Time  `json:"created_at"`
	AgeSeconds   float64    `json:"age_seconds"`
	Files        int        `json:"files"`
	LoadedFiles  int        `json:"loaded_files"`
	Rows         int64      `json:"rows"`
	BeganAt      time.Time  `json:"began_at"`
	LoadedAt     *time.Time `json:"loaded_at"`
	Current      bool       `json:"current"`
	Loaded       bool       `json:"loaded"`
	Emptied      bool       `json:"emptied_by_a_crash"`
}

// Status is the current report and the ones it replaced.
type Status struct {
	Current  *Report  `json:"current"`
	Replaced []Report `json:"replaced"`
}

func view(r ledger.InventoryReport, now time.Time) Report {
	return Report{ID: r.ID, Location: r.Location, SourceBucket: r.SourceBucket, Format: r.Format, CreatedAt: r.CreatedAt,
		AgeSeconds: now.Sub(r.CreatedAt).Seconds(), Files: r.Files, LoadedFiles: r.LoadedFiles, Rows: r.Rows, BeganAt: r.BeganAt,
		LoadedAt: r.LoadedAt, Current: r.Current, Loaded: r.Loaded(), Emptied: r.Emptied}
}

// ReadStatus reads the reports the ledger knows.
func ReadStatus(ctx context.Context, st *ledger.Store) (Status, error) {
	all, err := st.InventoryReports(ctx)
	if err != nil {
		return Status{}, err
	}
	now := time.Now()
	s := Status{Replaced: []Report{}}
	for _, r := range all {
		v := view(r, now)
		if r.Current {
			s.Current = &v
		} else {
			s.Replaced = append(s.Replaced, v)
		}
	}
	return s, nil
}

// WriteText writes the status for a person.
func (s Status) WriteText(w io.Writer) error {
	c := s.Current
	if c == nil {
		_, err := fmt.Fprintln(w, "no S3 Inventory report is loaded: migratectl inventory load --inventory s3://bucket/path/manifest.json (or a local directory)")
		return err
	}
	fmt.Fprintf(w, "report of s3://%s created %s (%s old), %s, from %s\n", c.SourceBucket, c.CreatedAt.Format(time.RFC3339), Age(time.Duration(c.AgeSeconds*float64(time.Second))), c.Format, c.Location)
	switch {
	case c.Emptied:
		fmt.Fprintf(w, "EMPTIED: a Postgres crash or failover emptied its objects (the table is unlogged): run migratectl inventory load --inventory %s again\n", c.Location)
	case c.Loaded:
		fmt.Fprintf(w, "loaded: %d of %d data files, %s objects, at %s (began %s)\n", c.LoadedFiles, c.Files, humanize.Comma(c.Rows), c.LoadedAt.Format(time.RFC3339), c.BeganAt.Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "LOADING (or stopped): %d of %d data files, %s objects so far, began %s; run migratectl inventory load --inventory %s to finish it\n",
			c.LoadedFiles, c.Files, humanize.Comma(c.Rows), c.BeganAt.Format(time.RFC3339), c.Location)
	}
	if len(s.Replaced) > 0 {
		p := s.Replaced[0]
		fmt.Fprintf(w, "it replaced the report of %s (%s objects); %d earlier report(s) are recorded\n", p.CreatedAt.Format(time.RFC3339), humanize.Comma(p.Rows), len(s.Replaced))
	}
	return nil
}

// Age renders a report's age in days and hours, or hours and minutes.
func Age(d time.Duration) string {
	if d >= 24*time.Hour {
		days := int(d / (24 * time.Hour))
		return fmt.Sprintf("%dd%dh", days, int((d-time.Duration(days)*24*time.Hour)/time.Hour))
	}
	return d.Truncate(time.Minute).String()
}
