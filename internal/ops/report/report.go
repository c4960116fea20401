// Package report writes the audit record of a run, like S3 Batch Operations'
// completion report: one line per object the ledger recorded for each photo of
// the run (and one line for a photo with none), with the photo's final state,
// the old and new keys, the bytes, how the copy was verified, the attempts and
// the failure reason, as CSV or as JSON lines.
//
// It is streamed: the run's photos are read in keyset pages of the ledger, so
// the report of a run of any size is written with one page in memory.
package report

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// Format is the output format.
type Format string

// The formats.
const (
	CSV   Format = "csv"
	JSONL Format = "jsonl"
)

// ParseFormat checks the name of a format.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case CSV, JSONL:
		return Format(s), nil
	}
	return "", fmt.Errorf("unknown report format %q: the formats are csv and jsonl", s)
}

// Object states of a line.
const (
	ObjectCommitted  = "committed"   // the photo's swap (or derived commit) recorded it
	ObjectCopied     = "copied"      // copied, never committed (the photo failed or is still in progress)
	ObjectNewDeleted = "new_deleted" // rollback deleted the new copy
)

// Line is one line of the report. Photo fields repeat on each of a photo's
// lines; object fields are empty on the line of a photo without objects.
type Line struct {
	RunID    string       `json:"run_id"`
	PhotoID  string       `json:"photo_id"`
	OwnerID  string       `json:"owner_id,omitempty"`
	State    ledger.State `json:"state"`
	Attempts int          `json:"attempts"`
	// FailureReason and LastError are the last failure the ledger recorded
	// for the photo (kept when a later attempt succeeded, cleared by a swap).
	FailureReason string `json:"failure_reason,omitempty"`
	LastError     string `json:"last_error,omitempty"`

	Kind              string     `json:"kind,omitempty"`
	OldKey            string     `json:"old_key,omitempty"`
	NewKey            string     `json:"new_key,omitempty"`
	Bytes             *int64     `json:"bytes,omitempty"`
	ObjectState       string     `json:"object_state,omitempty"`
	VerifyMethod      string     `json:"verify_method,omitempty"`
	ChecksumAlgorithm string     `json:"checksum_algorithm,omitempty"`
	Checksum          string     `json:"checksum,omitempty"`
	SourceETag        string     `json:"source_etag,omitempty"`
	ETag              string     `json:"etag,omitempty"`
	CopiedAt          *time.Time `json:"copied_at,omitempty"`
	VerifiedAt        *time.Time `json:"verified_at,omitempty"`
	LegacyDeletedAt   *time.Time `json:"legacy_deleted_at,omitempty"`

	EnqueuedAt   *time.Time `json:"enqueued_at,omitempty"`
	SwappedAt    *time.Time `json:"swapped_at,omitempty"`
	ArchivedAt   *time.Time `json:"archived_at,omitempty"`
	FailedAt     *time.Time `json:"failed_at,omitempty"`
	RolledBackAt *time.Time `json:"rolled_back_at,omitempty"`
	CleanedAt    *time.Time `json:"cleaned_at,omitempty"`
}

// Header is the CSV header, in the order of Line's fields.
var Header = []string{"run_id", "photo_id", "owner_id", "state", "attempts", "failure_reason", "last_error",
	"kind", "old_key", "new_key", "bytes", "object_state", "verify_method", "checksum_algorithm", "checksum",
	"source_etag", "etag", "copied_at", "verified_at", "legacy_deleted_at",
	"enqueued_at", "swapped_at", "archived_at", "failed_at", "rolled_back_at", "cleaned_at"}

func (l Line) record() []string {
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	bytes := ""
	if l.Bytes != nil {
		bytes = strconv.FormatInt(*l.Bytes, 10)
	}
	return []string{l.RunID, l.PhotoID, l.OwnerID, string(l.State), strconv.Itoa(l.Attempts), l.FailureReason, l.LastError,
		l.Kind, l.OldKey, l.NewKey, bytes, l.ObjectState, l.VerifyMethod, l.ChecksumAlgorithm, l.Checksum,
		l.SourceETag, l.ETag, ts(l.CopiedAt), ts(l.VerifiedAt), ts(l.LegacyDeletedAt),
		ts(l.EnqueuedAt), ts(l.SwappedAt), ts(l.ArchivedAt), ts(l.FailedAt), ts(l.RolledBackAt), ts(l.CleanedAt)}
}

// Lines turns one photo into its report lines: one per object move, or, for a
// photo without any, one per key its row held before the migration touched it
// (an archived photo's), or a single line.
func Lines(p ledger.ReportPhoto) []Line {
	base := Line{
		RunID: p.RunID, PhotoID: p.PhotoID, State: p.State, Attempts: p.Attempts,
		EnqueuedAt: p.EnqueuedAt, SwappedAt: p.SwappedAt, ArchivedAt: p.ArchivedAt, FailedAt: p.FailedAt,
		RolledBackAt: p.RolledBackAt, CleanedAt: p.CleanedAt,
	}
	if p.OwnerID != nil {
		base.OwnerID = *p.OwnerID
	}
	if p.LastReason != nil {
		base.FailureReason = *p.LastReason
	}
	if p.LastError != nil {
		base.LastError = *p.LastError
	}
	var out []Line
	for _, o := range p.Objects {
		l := base
		size := o.Size
		l.Kind, l.OldKey, l.NewKey, l.Bytes = o.Kind, o.OldKey, o.NewKey, &size
		// ETags without the quotes S3 puts around them.
		l.VerifyMethod, l.ChecksumAlgorithm, l.Checksum = o.VerifyMethod, o.ChecksumAlgorithm, o.Checksum
		l.SourceETag, l.ETag = strings.Trim(o.SourceETag, `"`), strings.Trim(o.ETag, `"`)
		l.CopiedAt, l.VerifiedAt, l.LegacyDeletedAt = o.CopiedAt, o.VerifiedAt, o.DeletedAt
		switch {
		case o.NewDeletedAt != nil:
			l.ObjectState = ObjectNewDeleted
		case o.CommittedAt != nil:
			l.ObjectState = ObjectCommitted
		default:
			l.ObjectState = ObjectCopied
		}
		out = append(out, l)
	}
	if len(out) > 0 {
		return out
	}
	for _, k := range []struct {
		kind string
		key  *string
	}{{"original", &p.Old.Original}, {"restored", p.Old.Processed}, {"thumbnail", p.Old.Thumbnail}} {
		if k.key != nil && *k.key != "" {
			l := base
			l.Kind, l.OldKey = k.kind, *k.key
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		out = append(out, base)
	}
	return out
}

// Summary counts what a report contained.
type Summary struct {
	RunID   string                 `json:"run_id"`
	Photos  int64                  `json:"photos"`
	Lines   int64                  `json:"lines"`
	Objects int64                  `json:"objects"`
	Bytes   int64                  `json:"bytes"`
	States  map[ledger.State]int64 `json:"states"`
}

// pageSize is the number of photos read per ledger page (a variable for tests).
var pageSize = 500

// Write streams the report of runID to w. An unknown run is refused before
// anything is written.
func Write(ctx context.Context, st *ledger.Store, runID string, f Format, w io.Writer) (Summary, error) {
	sum := Summary{RunID: runID, States: map[ledger.State]int64{}}
	if _, err := st.RunFind(ctx, runID); err != nil {
		return sum, err
	}
	var cw *csv.Writer
	var enc *json.Encoder
	switch f {
	case CSV:
		cw = csv.NewWriter(w)
		if err := cw.Write(Header); err != nil {
			return sum, err
		}
	case JSONL:
		enc = json.NewEncoder(w)
	default:
		return sum, fmt.Errorf("report format %q: give csv or jsonl", f)
	}
	after := ""
	for {
		page, err := st.RunReportPage(ctx, runID, after, pageSize)
		if err != nil {
			return sum, err
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			sum.Photos++
			sum.States[p.State]++
			for _, l := range Lines(p) {
				sum.Lines++
				if l.Bytes != nil {
					sum.Objects++
					sum.Bytes += *l.Bytes
				}
				if cw != nil {
					err = cw.Write(l.record())
				} else {
					err = enc.Encode(l)
				}
				if err != nil {
					return sum, fmt.Errorf("write report: %w", err)
				}
			}
		}
		if cw != nil {
			cw.Flush()
			if err := cw.Error(); err != nil {
				return sum, fmt.Errorf("write report: %w", err)
			}
		}
		after = page[len(page)-1].PhotoID
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return sum, fmt.Errorf("write report: %w", err)
		}
	}
	return sum, nil
}
