package plan

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// WriteText writes the report as the human table migratectl plan prints.
// Each section is written by its own method of textWriter, in the order
// the operator reads them: what was read, then what will be done, then what
// is wrong, then what it costs.
func (r *Report) WriteText(w io.Writer) error {
	t := newTextWriter(w)
	t.header(r)
	t.legacyObjects(r)
	t.photos(r)
	t.copies(r)
	t.largest(r)
	t.problems(r)
	t.estimate(r)
	return nil
}

// textWriter holds the two tabwriters the sections share: tw aligns numbers
// right (the tables), left aligns text left (lists and notes). Both write to
// w, so a section flushes its tabwriter before the next writes to w.
type textWriter struct {
	w    io.Writer
	tw   *tabwriter.Writer
	left *tabwriter.Writer
}

func newTextWriter(w io.Writer) *textWriter {
	return &textWriter{
		w:    w,
		tw:   tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight),
		left: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0),
	}
}

// row writes one row of the right-aligned table.
func (t *textWriter) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")+"\t") }

// commas formats a count with thousands separators.
func commas(v int64) string { return humanize.Comma(v) }

// ibytes formats a byte count (negative counts as zero).
func ibytes(v int64) string { return humanize.IBytes(uint64(max(v, 0))) }

// header says where the listing came from: an S3 Inventory report (an
// estimate as of its date) or LIST requests.
func (t *textWriter) header(r *Report) {
	w := t.w
	if inv := r.Listing.Inventory; inv != nil {
		fmt.Fprintf(w, "plan of s3://%s at %s: %s legacy objects read from the S3 Inventory report of %s (%s old, %s) in %s (%s pages over %d key ranges, no LIST request); %s legacy rows read\n",
			r.Bucket, r.At.Format(time.RFC3339), commas(r.Listing.Objects), inv.CreatedAt.Format(time.RFC3339), dur(inv.AgeSeconds), inv.Location,
			dur(r.Listing.Seconds), commas(r.Listing.InventoryPages), r.Listing.Shards, commas(r.Photos.LegacyRows))
		fmt.Fprintf(w, "an estimate as of the report's date: objects written since are not counted, objects deleted since are (docs/inventory.md)\n")
	} else {
		fmt.Fprintf(w, "plan of s3://%s at %s: %s legacy objects listed in %s (%s LIST requests over %d key ranges); %s legacy rows read\n",
			r.Bucket, r.At.Format(time.RFC3339), commas(r.Listing.Objects), dur(r.Listing.Seconds), commas(r.Listing.Requests), r.Listing.Shards, commas(r.Photos.LegacyRows))
	}
	switch {
	case r.Ranges > 1:
		fmt.Fprintf(w, "joined in Postgres in %d ranges of job ids, one at a time\n", r.Ranges)
	case r.RangesNote != "":
		fmt.Fprintf(w, "joined in Postgres: %s\n", r.RangesNote)
	}
	fmt.Fprintln(w)
}

// legacyObjects writes the listed legacy objects by prefix and by storage
// class.
func (t *textWriter) legacyObjects(r *Report) {
	row := t.row
	fmt.Fprintln(t.w, "LEGACY OBJECTS")
	row("prefix", "objects", "bytes")
	for _, p := range keylayout.LegacyPrefixes {
		tot := r.Listing.Prefixes[p]
		row(p, commas(tot.Objects), ibytes(tot.Bytes))
	}
	row("total", commas(r.Listing.Objects), ibytes(r.Listing.Bytes))
	classes := make([]string, 0, len(r.Listing.ByStorageClass))
	for c := range r.Listing.ByStorageClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	for _, c := range classes {
		tot := r.Listing.ByStorageClass[c]
		row("  "+c, commas(tot.Objects), ibytes(tot.Bytes))
	}
	t.tw.Flush()
}

// photos writes what becomes of the rows referencing a legacy key.
func (t *textWriter) photos(r *Report) {
	row := t.row
	fmt.Fprintln(t.w, "\nPHOTOS (rows referencing a legacy key)")
	row("to migrate", commas(r.Photos.ToMigrate))
	row("ownerless: archived for review", commas(r.Photos.Ownerless))
	row("already archived", commas(r.Photos.Archived))
	row("invalid owner or photo id", commas(r.Photos.InvalidID))
	row("unrecognised keys", commas(r.Photos.UnrecognisedKeys))
	row("total", commas(r.Photos.LegacyRows))
	t.tw.Flush()
}

// copies writes the copies the backfill will make, by kind, and the notes
// on multipart copies and objects an earlier run already moved.
func (t *textWriter) copies(r *Report) {
	row, w := t.row, t.w
	fmt.Fprintln(w, "\nCOPIES (one per photo to migrate and object)")
	row("kind", "objects", "bytes", "multipart", "archive class")
	for _, k := range kinds(r.Copies.ByKind) {
		tot := r.Copies.ByKind[k]
		row(k, commas(tot.Objects), ibytes(tot.Bytes), commas(tot.Multipart), commas(tot.Archived))
	}
	row("total", commas(r.Copies.Objects), ibytes(r.Copies.Bytes), commas(r.Copies.Multipart), commas(r.Problem(probArchiveClass).Count))
	t.tw.Flush()
	if r.Copies.Multipart > 0 {
		fmt.Fprintf(w, "%s objects above the multipart threshold are copied in %s UploadPartCopy requests\n", commas(r.Copies.Multipart), commas(r.Copies.Parts))
	}
	if r.AlreadyMoved > 0 {
		fmt.Fprintf(w, "%s listed objects were already moved by an earlier run (the ledger records them)\n", commas(r.AlreadyMoved))
	}
}

// largest writes the largest legacy objects, if any were listed.
func (t *textWriter) largest(r *Report) {
	if len(r.Largest) == 0 {
		return
	}
	fmt.Fprintln(t.w, "\nLARGEST LEGACY OBJECTS")
	for _, o := range r.Largest {
		note := ""
		if o.Multipart {
			note = "  (multipart copy)"
		}
		fmt.Fprintf(t.left, "  %s\t%s\t%s%s\n", ibytes(o.Size), o.StorageClass, o.Key, note)
	}
	t.left.Flush()
}

// problems writes every problem, with its count and outcome, and the
// examples of those that occurred.
func (t *textWriter) problems(r *Report) {
	left := t.left
	fmt.Fprintln(t.w, "\nPROBLEMS")
	for _, p := range r.Problems {
		count := commas(p.Count)
		if p.Bytes > 0 {
			count += " (" + ibytes(p.Bytes) + ")"
		}
		fmt.Fprintf(left, "  %s\t%s\t%s\n", strings.ReplaceAll(p.Name, "_", " "), count, p.Outcome)
		if p.Count == 0 {
			continue
		}
		for _, e := range p.Examples {
			fmt.Fprintf(left, "  \t\t  %s\n", exampleText(e))
		}
	}
	left.Flush()
}

// exampleText is one example of a problem: its photo, key, rows and detail,
// those it has.
func exampleText(e ledger.KeyExample) string {
	var parts []string
	if e.PhotoID != "" {
		parts = append(parts, "photo "+e.PhotoID)
	}
	parts = append(parts, e.Key)
	if e.Rows > 0 {
		parts = append(parts, fmt.Sprintf("(%d rows)", e.Rows))
	}
	if e.Detail != "" {
		parts = append(parts, "("+e.Detail+")")
	}
	return strings.Join(parts, " ")
}

// estimate writes the request costs of the backfill and the cleanup, the
// storage cost of the grace period, and the latency and duration when they
// were calibrated.
func (t *textWriter) estimate(r *Report) {
	row, w, left := t.row, t.w, t.left
	e := r.Estimate
	fmt.Fprintf(w, "\nESTIMATE (prices: PUT/COPY/POST/LIST %s per 1,000, GET/HEAD %s per 1,000, storage %s per GB-month, SQS %s per million:\n",
		money(e.Prices.PutPer1000), money(e.Prices.GetPer1000), money(e.Prices.StorageGBMonth), money(e.Prices.SQSPerMillion))
	fmt.Fprintln(w, "us-east-1 defaults as of 2026, flags of migratectl plan: check them against the current price list)")
	row("backfill requests", "count", "cost")
	for _, q := range e.Requests {
		row(q.Service+" "+q.Operation, commas(q.Count), money(q.Cost))
	}
	row("total", "", money(e.RequestCost))
	row("cleanup requests", "", "")
	for _, q := range e.Cleanup {
		row(q.Service+" "+q.Operation, commas(q.Count), money(q.Cost))
	}
	row("total", "", money(e.CleanupCost))
	t.tw.Flush()
	fmt.Fprintf(left, "  storage of both copies\t%s per day; %s over a %g-day grace period (%s of copies)\n", money(e.StoragePerDay), money(e.StorageGrace), e.GraceDays, ibytes(r.Copies.Bytes))
	fmt.Fprintf(left, "  this plan's listing\t%s LIST requests, %s\n", commas(r.Listing.Requests), money(e.PlanCost))
	t.calibration(r)
	left.Flush()
	fmt.Fprintf(w, "  formula: %s\n", e.Formula)
}

// calibration writes the latency per photo and, when it is known, the
// fleet's rate and the duration it gives (to left, which the caller
// flushes).
func (t *textWriter) calibration(r *Report) {
	left := t.left
	e := r.Estimate
	c := e.Calibration
	switch c.Source {
	case NotCalibrated:
		fmt.Fprintf(left, "  latency\tunknown: %s\n", c.Note)
	default:
		src := string(c.Source)
		if c.Run != "" {
			src += " of run " + c.Run
		}
		extra := ""
		if c.Failed > 0 {
			extra = fmt.Sprintf(", %d failed", c.Failed)
		}
		if c.Source == CalibratedByScratchCopy {
			extra += fmt.Sprintf(", %d scratch objects deleted", c.Deleted)
		}
		fmt.Fprintf(left, "  latency per photo\tp50 %s, p90 %s (%s, %s photos%s; %s)\n", dur(c.P50), dur(c.P90), src, commas(c.Photos), extra, c.Note)
	}
	if c.Source != NotCalibrated {
		ceiling := "no copies left"
		if e.S3Ceiling > 0 {
			ceiling = "S3 ceiling " + rate(e.S3Ceiling) + " photos/s"
		}
		occ := ""
		if c.Occupancy > 0 {
			occ = fmt.Sprintf(", %.0f%% of the slots busy as in the calibrating run (%.1f of at most %d photos in flight)",
				c.Occupancy*100, c.Occupancy*float64(c.PeakInFlight), c.PeakInFlight)
		}
		fmt.Fprintf(left, "  fleet\t%d workers × %d concurrency%s: %s photos/s at p50, %s at p90 (%s)\n",
			e.Workers, e.Concurrency, occ, rate(e.PhotosPerSecondP50), rate(e.PhotosPerSecondP90), ceiling)
		fmt.Fprintf(left, "  duration\t%s at p50, %s at p90, for %s photos\n", dur(e.SecondsP50), dur(e.SecondsP90), commas(r.Photos.ToMigrate))
	}
}

func money(x float64) string {
	switch {
	case x == 0:
		return "$0"
	case x >= 100:
		return "$" + humanize.Comma(int64(math.Round(x)))
	case x >= 1:
		return fmt.Sprintf("$%.2f", x)
	default:
		return "$" + strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.6f", x), "0"), ".")
	}
}

func rate(x float64) string {
	if x >= 100 {
		return humanize.Comma(int64(math.Round(x)))
	}
	return fmt.Sprintf("%.1f", x)
}

func dur(sec float64) string {
	switch {
	case sec <= 0:
		return "0s"
	case sec < 1:
		return fmt.Sprintf("%.0fms", sec*1000)
	case sec < 60:
		return fmt.Sprintf("%.1fs", sec)
	case sec < 3600:
		return time.Duration(sec * float64(time.Second)).Round(time.Second).String()
	case sec < 48*3600:
		return time.Duration(sec * float64(time.Second)).Round(time.Minute).String()
	}
	return fmt.Sprintf("%.1f days", sec/86400)
}
