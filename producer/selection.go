package producer

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// A staged rollout enqueues a subset of the legacy photos: a team's own
// accounts (Owners), a list of photos (PhotosFrom), a deterministic sample
// (SamplePercent), at most Limit photos. The selection is recorded on the run;
// a later, wider run skips what was already migrated, because the producer only
// ever scans rows that still reference legacy keys.

// BadLine is one line of a photo list that could not be read.
type BadLine struct {
	Line   int    `json:"line"`
	Text   string `json:"text"`
	Reason string `json:"reason"`
}

// ListError refuses a whole photo list because some of its lines are
// malformed: nothing is enqueued from a file that is partly wrong. It comes
// wrapped in a *PhotoListError.
type ListError struct {
	Path string
	// Bad lists the first malformed lines; Count counts them all.
	Bad   []BadLine
	Count int
}

// maxBadLines is how many malformed lines a ListError lists.
const maxBadLines = 50

func (e *ListError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d malformed lines; nothing was enqueued. Fix or remove them and run again:", e.Count)
	for _, l := range e.Bad {
		fmt.Fprintf(&b, "\n  line %d: %q: %s", l.Line, l.Text, l.Reason)
	}
	if e.Count > len(e.Bad) {
		fmt.Fprintf(&b, "\n  … %d more", e.Count-len(e.Bad))
	}
	return b.String()
}

// photoListReader reads the ids of a photo list: one id per line, or CSV whose
// column photo_id (or id) holds them when the first line is a header naming
// it, else the first column. Blank lines and lines starting with # are
// skipped.
type photoListReader struct {
	r      *csv.Reader
	column int
	header bool
}

func newPhotoListReader(r io.Reader) *photoListReader {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	return &photoListReader{r: cr, column: -1}
}

// next returns the next id and its line; bad is set (and id empty) for a line
// that holds no valid id. It returns io.EOF at the end.
func (p *photoListReader) next(idType string) (id string, line int, bad *BadLine, err error) {
	for {
		rec, err := p.r.Read()
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return "", pe.StartLine, &BadLine{Line: pe.StartLine, Reason: "not valid CSV: " + pe.Err.Error()}, nil
		}
		if err != nil {
			return "", 0, nil, err
		}
		line, _ = p.r.FieldPos(0)
		if p.column < 0 {
			p.column = 0
			if i := headerColumn(rec); i >= 0 {
				p.column, p.header = i, true
				continue
			}
		}
		text := strings.Join(rec, ",")
		if p.column >= len(rec) {
			return "", line, &BadLine{Line: line, Text: text, Reason: fmt.Sprintf("no column %d (the header names it)", p.column+1)}, nil
		}
		id = strings.TrimSpace(rec[p.column])
		if err := keylayout.ValidateID(id); err != nil {
			return "", line, &BadLine{Line: line, Text: text, Reason: "not a photo id (a UUID or a positive decimal integer)"}, nil
		}
		if err := ledger.IDFitsType(id, idType); err != nil {
			return "", line, &BadLine{Line: line, Text: text, Reason: "photos.id: " + err.Error()}, nil
		}
		if idType == "uuid" {
			id = strings.ToLower(id)
		}
		return id, line, nil, nil
	}
}

// headerColumn returns the index of the photo_id (or id) column if rec is a
// header, else -1.
func headerColumn(rec []string) int {
	for _, name := range []string{"photo_id", "id"} {
		for i, f := range rec {
			if strings.EqualFold(strings.TrimSpace(f), name) {
				return i
			}
		}
	}
	return -1
}

// ReadPhotoList checks a whole photo list before anything is enqueued: every
// line must hold a photo id of photos.id's type (idType). It returns the list's
// identity (hash and number of ids) for the run's record, or a
// *PhotoListError: one wrapping a *ListError names every malformed line. The
// file is streamed: memory does not grow with its length.
func ReadPhotoList(path, idType string) (*ledger.PhotoList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &PhotoListError{Path: path, Err: err}
	}
	defer f.Close()
	h := sha256.New()
	lr := newPhotoListReader(io.TeeReader(f, h))
	le := &ListError{Path: path}
	var n int64
	for {
		id, _, bad, err := lr.next(idType)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &PhotoListError{Path: path, Err: err}
		}
		if bad != nil {
			le.Count++
			if len(le.Bad) < maxBadLines {
				le.Bad = append(le.Bad, *bad)
			}
			continue
		}
		if id != "" {
			n++
		}
	}
	if le.Count > 0 {
		return nil, &PhotoListError{Path: path, Err: le}
	}
	if n == 0 {
		return nil, &PhotoListError{Path: path, Err: ErrEmptyPhotoList}
	}
	return &ledger.PhotoList{Path: path, SHA256: hex.EncodeToString(h.Sum(nil)), IDs: n}, nil
}

// source yields a run's candidate photos page by page, in checkpoint order.
type source interface {
	// next returns the next page of photos to consider and, for each, the
	// checkpoint that records it as handled; end is the checkpoint after the
	// whole page (it may pass lines that held no legacy photo). done says the
	// source is exhausted after this page.
	next(ctx context.Context) (photos []ledger.Photo, marks []string, end string, done bool, err error)
}

// scanSource walks the photos table in primary-key order (keyset pages).
type scanSource struct {
	store        *ledger.Store
	sel          *ledger.Selector
	lower, upper string // a shard's range (empty: unbounded)
	after        string
	size         int
}

func (s *scanSource) next(ctx context.Context) ([]ledger.Photo, []string, string, bool, error) {
	page, err := s.sel.ScanRange(ctx, s.store, s.lower, s.upper, s.after, s.size)
	if err != nil || len(page) == 0 {
		return nil, nil, "", true, err
	}
	marks := make([]string, len(page))
	for i, p := range page {
		marks[i] = p.ID
	}
	s.after = page[len(page)-1].ID
	return page, marks, s.after, len(page) < s.size, nil
}

// listSource walks a photo list in file order, a chunk of ids at a time. Its
// checkpoints are "line:N": the run resumes after line N.
type listSource struct {
	store  *ledger.Store
	sel    *ledger.Selector
	f      *os.File
	r      *photoListReader
	after  int // resume after this line
	size   int
	idType string
}

const lineMark = "line:"

func openListSource(store *ledger.Store, sel *ledger.Selector, path, checkpoint string, size int) (*listSource, error) {
	after := 0
	if checkpoint != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(checkpoint, lineMark))
		if !strings.HasPrefix(checkpoint, lineMark) || err != nil {
			return nil, &PhotoListError{Path: path, Err: fmt.Errorf("the run's checkpoint %q is not a line of a photo list: was the run started without one?", checkpoint)}
		}
		after = n
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &PhotoListError{Path: path, Err: err}
	}
	return &listSource{store: store, sel: sel, f: f, r: newPhotoListReader(f), after: after, size: size, idType: sel.IDType()}, nil
}

func (s *listSource) close() { s.f.Close() }

func (s *listSource) next(ctx context.Context) ([]ledger.Photo, []string, string, bool, error) {
	var ids []string
	lines := map[string]int{}
	last, done := 0, false
	for len(ids) < s.size {
		id, line, bad, err := s.r.next(s.idType)
		if errors.Is(err, io.EOF) {
			done = true
			break
		}
		if err != nil {
			return nil, nil, "", true, err
		}
		if bad != nil {
			// ReadPhotoList accepted the file: it changed since.
			return nil, nil, "", true, &PhotoListError{Path: s.f.Name(), Err: fmt.Errorf("line %d changed since the file was checked: %s", bad.Line, bad.Reason)}
		}
		last = line
		if line <= s.after {
			continue
		}
		if _, dup := lines[id]; !dup {
			lines[id] = line
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil, "", done, nil
	}
	page, err := s.sel.Among(ctx, s.store, ids)
	if err != nil {
		return nil, nil, "", true, err
	}
	// In file order, so that a checkpoint at line N means every line up to N
	// was handled.
	slices.SortFunc(page, func(a, b ledger.Photo) int { return lines[a.ID] - lines[b.ID] })
	marks := make([]string, len(page))
	for i, p := range page {
		marks[i] = lineMark + strconv.Itoa(lines[p.ID])
	}
	return page, marks, lineMark + strconv.Itoa(last), done, nil
}
