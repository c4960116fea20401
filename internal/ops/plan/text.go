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
)

// WriteText writes the report as the human table migratectl plan prints.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	left := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	n := humanize.Comma
	b := func(v int64) string { return humanize.IBytes(uint64(max(v, 0))) }

	if inv := r.Listing.Inventory; inv != nil {
		fmt.Fprintf(w, "plan of s3://%s at %s: %s legacy objects read from the S3 Inventory report of %s (%s old, %s) in %s (%s pages over %d key ranges, no LIST request); %s legacy rows read\n",
			r.Bucket, r.At.Format(time.RFC3339), n(r.Listing.Objects), inv.CreatedAt.Format(time.RFC3339), dur(inv.AgeSeconds), inv.Location,
			dur(r.Listing.Seconds), n(r.Listing.InventoryPages), r.Listing.Shards, n(r.Photos.LegacyRows))
		fmt.Fprintf(w, "an estimate as of the report's date: objects written since are not counted, objects deleted since are (docs/inventory.md)\n\n")
	} else {
		fmt.Fprintf(w, "plan of s3://%s at %s: %s legacy objects listed in %s (%s LIST requests over %d key ranges); %s legacy rows read\n\n",
			r.Bucket, r.At.Format(time.RFC3339), n(r.Listing.Objects), dur(r.Listing.Seconds), n(r.Listing.Requests), r.Listing.Shards, n(r.Photos.LegacyRows))
	}

	fmt.Fprintln(w, "LEGACY OBJECTS")
	row("prefix", "objects", "bytes")
	for _, p := range keylayout.LegacyPrefixes {
		t := r.Listing.Prefixes[p]
		row(p, n(t.Objects), b(t.Bytes))
	}
	row("total", n(r.Listing.Objects), b(r.Listing.Bytes))
	classes := make([]string, 0, len(r.Listing.ByStorageClass))
	for c := range r.Listing.ByStorageClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	for _, c := range classes {
		t := r.Listing.ByStorageClass[c]
		row("  "+c, n(t.Objects), b(t.Bytes))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nPHOTOS (rows referencing a legacy key)")
	row("to migrate", n(r.Photos.ToMigrate))
	row("ownerless: archived for review", n(r.Photos.Ownerless))
	row("already archived", n(r.Photos.Archived))
	row("invalid owner or photo id", n(r.Photos.InvalidID))
	row("unrecognised keys", n(r.Photos.UnrecognisedKeys))
	row("total", n(r.Photos.LegacyRows))
	tw.Flush()

	fmt.Fprintln(w, "\nCOPIES (one per photo to migrate and object)")
	row("kind", "objects", "bytes", "multipart", "archive class")
	for _, k := range kinds(r.Copies.ByKind) {
		t := r.Copies.ByKind[k]
		row(k, n(t.Objects), b(t.Bytes), n(t.Multipart), n(t.Archived))
	}
	row("total", n(r.Copies.Objects), b(r.Copies.Bytes), n(r.Copies.Multipart), n(r.Problem(probArchiveClass).Count))
	tw.Flush()
	if r.Copies.Multipart > 0 {
		fmt.Fprintf(w, "%s objects above the multipart threshold are copied in %s UploadPartCopy requests\n", n(r.Copies.Multipart), n(r.Copies.Parts))
	}
	if r.AlreadyMoved > 0 {
		fmt.Fprintf(w, "%s listed objects were already moved by an earlier run (the ledger records them)\n", n(r.AlreadyMoved))
	}

	if len(r.Largest) > 0 {
		fmt.Fprintln(w, "\nLARGEST LEGACY OBJECTS")
		for _, o := range r.Largest {
			note := ""
			if o.Multipart {
				note = "  (multipart copy)"
			}
			fmt.Fprintf(left, "  %s\t%s\t%s%s\n", b(o.Size), o.StorageClass, o.Key, note)
		}
		left.Flush()
	}

	fmt.Fprintln(w, "\nPROBLEMS")
	for _, p := range r.Problems {
		count := n(p.Count)
		if p.Bytes > 0 {
			count += " (" + b(p.Bytes) + ")"
		}
		fmt.Fprintf(left, "  %s\t%s\t%s\n", strings.ReplaceAll(p.Name, "_", " "), count, p.Outcome)
		if p.Count == 0 {
			continue
		}
		for _, e := range p.Examples {
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
			fmt.Fprintf(left, "  \t\t  %s\n", strings.Join(parts, " "))
		}
	}
	left.Flush()

	e := r.Estimate
	fmt.Fprintf(w, "\nESTIMATE (prices: PUT/COPY/POST/LIST %s per 1,000, GET/HEAD %s per 1,000, storage %s per GB-month, SQS %s per million:\n",
		money(e.Prices.PutPer1000), money(e.Prices.GetPer1000), money(e.Prices.StorageGBMonth), money(e.Prices.SQSPerMillion))
	fmt.Fprintln(w, "us-east-1 defaults as of 2026, flags of migratectl plan: check them against the current price list)")
	row("backfill requests", "count", "cost")
	for _, q := range e.Requests {
		row(q.Service+" "+q.Operation, n(q.Count), money(q.Cost))
	}
	row("total", "", money(e.RequestCost))
	row("cleanup requests", "", "")
	for _, q := range e.Cleanup {
		row(q.Service+" "+q.Operation, n(q.Count), money(q.Cost))
	}
	row("total", "", money(e.CleanupCost))
	tw.Flush()
	fmt.Fprintf(left, "  storage of both copies\t%s per day; %s over a %g-day grace period (%s of copies)\n", money(e.StoragePerDay), money(e.StorageGrace), e.GraceDays, b(r.Copies.Bytes))
	fmt.Fprintf(left, "  this plan's listing\t%s LIST requests, %s\n", n(r.Listing.Requests), money(e.PlanCost))
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
		fmt.Fprintf(left, "  latency per photo\tp50 %s, p90 %s (%s, %s photos%s; %s)\n", dur(c.P50), dur(c.P90), src, n(c.Photos), extra, c.Note)
	}
	if c.Source != NotCalibrated {
		ceiling := "no copies left"
		if e.S3Ceiling > 0 {
			ceiling = "S3 ceiling " + rate(e.S3Ceiling) + " photos/s"
		}
		fmt.Fprintf(left, "  fleet\t%d workers × %d concurrency: %s photos/s at p50, %s at p90 (%s)\n",
			e.Workers, e.Concurrency, rate(e.PhotosPerSecondP50), rate(e.PhotosPerSecondP90), ceiling)
		fmt.Fprintf(left, "  duration\t%s at p50, %s at p90, for %s photos\n", dur(e.SecondsP50), dur(e.SecondsP90), n(r.Photos.ToMigrate))
	}
	left.Flush()
	fmt.Fprintf(w, "  formula: %s\n", e.Formula)
	return nil
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
