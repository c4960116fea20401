package archived

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

// Manual review ends with a decision per archived photo: whose is it? Assign
// records that decision and migrates the photo like any other: the row is
// un-archived by compare-and-swap (owner set, the status it had before the
// worker archived it restored), the assignment is written to the ledger in the
// same transaction, and one message is enqueued. Assigning the same owner
// again is a no-op; a different owner for a photo already assigned is refused.
// A run interrupted between the row's update and the message resumes when the
// same input is given again: the assignment is found without its enqueued
// time and its message is sent.

// Item is one decision: a photo and its owner, and where it was read (the
// line of a CSV file; 0 for a decision given directly).
type Item struct {
	PhotoID string `json:"photo_id"`
	OwnerID string `json:"owner_id"`
	Line    int    `json:"line,omitempty"`
}

// Source names where an item came from, given the input's name
// (Options.Source): the name itself for a decision given directly, else the
// file and the line.
func (it Item) Source(input string) string {
	if it.Line == 0 {
		return input
	}
	return fmt.Sprintf("%s:%d", input, it.Line)
}

// Invalid is an item (or a line) that cannot be applied, and why.
type Invalid struct {
	Line    int    `json:"line,omitempty"`
	Text    string `json:"text,omitempty"`
	PhotoID string `json:"photo_id,omitempty"`
	OwnerID string `json:"owner_id,omitempty"`
	Reason  string `json:"reason"`
	// NewOwner says the only problem is an owner who owns no photo yet: a
	// likely typo, which Options.AllowNewOwner accepts.
	NewOwner bool `json:"new_owner,omitempty"`
}

// String names the item (its line, or its photo) and says why it is invalid.
func (v Invalid) String() string {
	where := "photo " + v.PhotoID
	if v.Line > 0 {
		where = fmt.Sprintf("line %d", v.Line)
		if v.Text != "" {
			where += fmt.Sprintf(" %q", v.Text)
		}
	}
	return where + ": " + v.Reason
}

// InputError refuses a whole input because some of its items are invalid:
// nothing was changed. Options.SkipInvalid applies the valid ones instead.
type InputError struct {
	Source  string
	Invalid []Invalid
}

// Error names the input and lists every invalid item.
func (e *InputError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d of the assignments cannot be applied; nothing was changed:", e.Source, len(e.Invalid))
	for _, v := range e.Invalid {
		b.WriteString("\n  " + v.String())
	}
	return b.String()
}

// ErrNothingToAssign is returned when the input holds no decision at all.
var ErrNothingToAssign = errors.New("nothing to assign: the input holds no photo_id,owner_id")

// ParseCSV reads photo_id,owner_id lines. A first line naming the columns
// (photo_id and owner_id, in any order) is a header; without one the first
// column is the photo and the second the owner. Blank lines and lines starting
// with # are skipped. Lines that are not two ids are returned as invalid, with
// their line number; the file is read whole (it is a review list, not the
// photos table).
func ParseCSV(r io.Reader) (items []Item, invalid []Invalid, sum string, err error) {
	h := sha256.New()
	cr := csv.NewReader(io.TeeReader(r, h))
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	photoCol, ownerCol, first := 0, 1, true
	for {
		rec, err := cr.Read()
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			invalid = append(invalid, Invalid{Line: pe.StartLine, Reason: "not valid CSV: " + pe.Err.Error()})
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, "", err
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			p, o := -1, -1
			for i, f := range rec {
				switch strings.ToLower(strings.TrimSpace(f)) {
				case "photo_id":
					p = i
				case "owner_id":
					o = i
				}
			}
			if p >= 0 && o >= 0 {
				photoCol, ownerCol = p, o
				continue
			}
		}
		text := strings.Join(rec, ",")
		if len(rec) <= max(photoCol, ownerCol) {
			invalid = append(invalid, Invalid{Line: line, Text: text, Reason: "want photo_id,owner_id"})
			continue
		}
		it := Item{PhotoID: strings.TrimSpace(rec[photoCol]), OwnerID: strings.TrimSpace(rec[ownerCol]), Line: line}
		if v := checkSyntax(it); v != nil {
			v.Text = text
			invalid = append(invalid, *v)
			continue
		}
		items = append(items, it)
	}
	return items, invalid, hex.EncodeToString(h.Sum(nil)), nil
}

func checkSyntax(it Item) *Invalid {
	if err := keylayout.ValidateID(it.PhotoID); err != nil {
		return &Invalid{Line: it.Line, PhotoID: it.PhotoID, OwnerID: it.OwnerID, Reason: "photo id: " + err.Error()}
	}
	if err := keylayout.ValidateID(it.OwnerID); err != nil {
		return &Invalid{Line: it.Line, PhotoID: it.PhotoID, OwnerID: it.OwnerID, Reason: "owner id: " + err.Error()}
	}
	return nil
}

// Options tune an assignment.
type Options struct {
	// By names the operator (recorded in the ledger).
	By string
	// Source names the input, in the ledger's assignment records and in
	// errors: a CSV file's path (SHA256 and Lines then identify it in the
	// run's selection), or the caller's name for decisions given directly
	// (migratectl's is "--photo").
	Source string
	SHA256 string
	Lines  int64
	// SkipInvalid applies the valid items and reports the others, instead of
	// refusing the whole input.
	SkipInvalid bool
	// AllowNewOwner accepts an owner who owns no other photo (by default such
	// an owner id is refused as a probable typo).
	AllowNewOwner bool
	// DryRun decides and reports, changing nothing.
	DryRun bool
	// Invalid are items the parser already refused (malformed lines).
	Invalid []Invalid
}

// Action is what happens to one item.
type Action string

// The actions.
const (
	Assign    Action = "assign"    // un-archive, record, enqueue
	Resend    Action = "resend"    // assigned earlier to this owner, message not sent yet
	Unchanged Action = "unchanged" // already assigned to this owner and enqueued: nothing to do
)

// Decision is an item and what is done with it.
type Decision struct {
	Item
	Action Action `json:"action"`
	RunID  string `json:"run_id,omitempty"`
}

// Result is what an assignment did (or, dry, would do).
type Result struct {
	RunID     string     `json:"run_id,omitempty"`
	DryRun    bool       `json:"dry_run"`
	Decisions []Decision `json:"decisions"`
	// Skipped are the invalid items left out with SkipInvalid; Changed the
	// photos whose row changed between the check and the update (left alone).
	Skipped  []Invalid `json:"skipped"`
	Changed  []Invalid `json:"changed"`
	Assigned int       `json:"assigned"`
	Resent   int       `json:"resent"`
	Noop     int       `json:"unchanged"`
}

// Plan checks every item against the photos table and the ledger and decides
// what to do with it. The returned invalid items include opts.Invalid.
func Plan(ctx context.Context, st *ledger.Store, items []Item, o Options) ([]Decision, []Invalid, map[string]ledger.AssignCandidate, error) {
	invalid := append([]Invalid(nil), o.Invalid...)
	idType, err := st.PhotoIDType(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	ownerType, err := st.PhotoOwnerIDType(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	ok, invalid := checkItems(items, idType, ownerType, invalid)
	cands, err := assignCandidates(ctx, st, ok)
	if err != nil {
		return nil, nil, nil, err
	}
	known := map[string]bool{}
	if !o.AllowNewOwner {
		if known, err = knownOwners(ctx, st, ok); err != nil {
			return nil, nil, nil, err
		}
	}
	var decisions []Decision
	for _, it := range ok {
		c, exists := cands[it.PhotoID]
		d, v := decide(it, c, exists, known, o.AllowNewOwner)
		if v != nil {
			invalid = append(invalid, *v)
			continue
		}
		decisions = append(decisions, d)
	}
	return decisions, invalid, cands, nil
}

// checkItems checks what can be checked without reading the photos: the
// syntax, the ids against the column types (uuid ids lower-cased first, as
// Postgres prints them) and duplicates (the same line twice is kept once;
// one photo given to two owners is invalid). It returns the items left and
// invalid with those refused appended.
func checkItems(items []Item, idType, ownerType string, invalid []Invalid) ([]Item, []Invalid) {
	var ok []Item
	seen := map[string]Item{}
	for _, it := range items {
		if v := checkSyntax(it); v != nil {
			invalid = append(invalid, *v)
			continue
		}
		if idType == "uuid" {
			it.PhotoID = strings.ToLower(it.PhotoID)
		}
		if ownerType == "uuid" {
			it.OwnerID = strings.ToLower(it.OwnerID)
		}
		if err := ledger.IDFitsType(it.PhotoID, idType); err != nil {
			invalid = append(invalid, Invalid{Line: it.Line, PhotoID: it.PhotoID, OwnerID: it.OwnerID, Reason: "photo id: " + err.Error()})
			continue
		}
		if err := ledger.IDFitsType(it.OwnerID, ownerType); err != nil {
			invalid = append(invalid, Invalid{Line: it.Line, PhotoID: it.PhotoID, OwnerID: it.OwnerID, Reason: "owner id: " + err.Error()})
			continue
		}
		if prev, dup := seen[it.PhotoID]; dup {
			if prev.OwnerID != it.OwnerID {
				invalid = append(invalid, Invalid{Line: it.Line, PhotoID: it.PhotoID, OwnerID: it.OwnerID,
					Reason: fmt.Sprintf("the photo is also assigned to %s on line %d: keep one of the two lines", prev.OwnerID, prev.Line)})
			}
			continue // the same decision twice: once is enough
		}
		seen[it.PhotoID] = it
		ok = append(ok, it)
	}
	return ok, invalid
}

// assignCandidates reads the photo row, ledger record and assignment of
// every item's photo, 1,000 ids a query (a bounded statement however long
// the file).
func assignCandidates(ctx context.Context, st *ledger.Store, items []Item) (map[string]ledger.AssignCandidate, error) {
	cands := map[string]ledger.AssignCandidate{}
	for start := 0; start < len(items); start += 1000 {
		chunk := items[start:min(start+1000, len(items))]
		ids := make([]string, len(chunk))
		for i, it := range chunk {
			ids[i] = it.PhotoID
		}
		got, err := st.PhotoAssignCandidates(ctx, ids)
		if err != nil {
			return nil, err
		}
		for k, v := range got {
			cands[k] = v
		}
	}
	return cands, nil
}

// knownOwners is the set of the items' owners that own at least one photo,
// read 1,000 owners a query: an owner with none is most likely a typo.
func knownOwners(ctx context.Context, st *ledger.Store, items []Item) (map[string]bool, error) {
	known := map[string]bool{}
	var owners []string
	for _, it := range items {
		owners = append(owners, it.OwnerID)
	}
	for start := 0; start < len(owners); start += 1000 {
		got, err := st.PhotoOwnersWithPhotos(ctx, owners[start:min(start+1000, len(owners))])
		if err != nil {
			return nil, err
		}
		for k := range got {
			known[k] = true
		}
	}
	return known, nil
}

// decide is the decision for one checked item given its candidate c
// (exists false: no photos row): a Decision, or the reason it is refused.
// Only an ownerless photo that keymigrate archived, with its previous status
// recorded, may be assigned; one already assigned to the same owner is sent
// again or left alone, never reassigned.
func decide(it Item, c ledger.AssignCandidate, exists bool, known map[string]bool, allowNewOwner bool) (Decision, *Invalid) {
	bad := func(format string, args ...any) (Decision, *Invalid) {
		return Decision{}, &Invalid{Line: it.Line, PhotoID: it.PhotoID, OwnerID: it.OwnerID, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case !exists:
		return bad("unknown photo id: no photos row has it (migratectl archived report lists the archived photos)")
	case c.Assignment != nil && c.Assignment.OwnerID == it.OwnerID:
		if c.Assignment.EnqueuedAt == nil {
			return Decision{Item: it, Action: Resend, RunID: c.Assignment.RunID}, nil
		}
		return Decision{Item: it, Action: Unchanged, RunID: c.Assignment.RunID}, nil
	case c.Assignment != nil:
		return bad("already assigned to owner %s by %s at %s (%s); refusing to reassign it to %s: a reassignment is a decision for the application, not the migration",
			c.Assignment.OwnerID, c.Assignment.AssignedBy, c.Assignment.AssignedAt.UTC().Format(time.RFC3339), c.Assignment.Source, it.OwnerID)
	case c.Photo.Status == nil || *c.Photo.Status != ledger.ArchivedStatus:
		if c.Photo.OwnerID != nil {
			return bad("the photo has owner %s and is not archived: there is nothing to assign", *c.Photo.OwnerID)
		}
		return bad("the photo has no owner but is not archived yet: run the producer and workers first (they archive ownerless photos), then assign it")
	case c.Photo.OwnerID != nil:
		return bad("the photo is archived but already has owner %s: assign only ownerless archived photos", *c.Photo.OwnerID)
	case !c.HasLedger || c.LedgerState != ledger.StateArchived:
		return bad("the photo is archived, but the ledger has no record of keymigrate archiving it (state %q), so its previous status is unknown: restore it in the application instead", c.LedgerState)
	case c.OldStatus == nil:
		return bad("the ledger has no status recorded from before the photo was archived: restore it in the application instead")
	case !allowNewOwner && !known[it.OwnerID]:
		d, v := bad("owner %s owns no photo: check the id (a typo would give the photo to nobody)", it.OwnerID)
		v.NewOwner = true
		return d, v
	default:
		return Decision{Item: it, Action: Assign}, nil
	}
}

// Run decides, then applies: refused as a whole (an *InputError, nothing
// changed) if any item is invalid, unless SkipInvalid. It needs a queue unless
// DryRun.
func Run(ctx context.Context, st *ledger.Store, q *queue.Queue, items []Item, o Options) (*Result, error) {
	res := &Result{DryRun: o.DryRun, Decisions: []Decision{}, Skipped: []Invalid{}, Changed: []Invalid{}}
	decisions, invalid, cands, err := Plan(ctx, st, items, o)
	if err != nil {
		return res, err
	}
	sort.SliceStable(invalid, func(i, j int) bool { return invalid[i].Line < invalid[j].Line })
	if len(invalid) > 0 && !o.SkipInvalid {
		return res, &InputError{Source: o.Source, Invalid: invalid}
	}
	res.Skipped = append(res.Skipped, invalid...)
	if len(decisions) == 0 {
		if len(invalid) == 0 {
			return res, ErrNothingToAssign
		}
		return res, nil
	}
	work := false
	for _, d := range decisions {
		work = work || d.Action != Unchanged
	}
	if o.DryRun || !work {
		// Nothing to change (every photo already assigned and enqueued) makes
		// no run either: assigning again is a no-op.
		res.Decisions = decisions
		count(res)
		return res, nil
	}
	sel := &ledger.Selection{Assign: &ledger.AssignSource{Path: o.Source, SHA256: o.SHA256, Lines: o.Lines}}
	if len(items) == 1 && items[0].Line == 0 { // one decision given directly
		sel.Assign = &ledger.AssignSource{Photo: items[0].PhotoID, Owner: items[0].OwnerID}
	}
	run, err := st.RunCreate(ctx, newRunID(time.Now()), ledger.RunAssign, sel)
	if err != nil {
		return res, err
	}
	res.RunID = run.ID
	a := &applier{st: st, q: q, o: o, runID: run.ID, cands: cands, res: res}
	for start := 0; start < len(decisions); start += queue.MaxBatch {
		batch := decisions[start:min(start+queue.MaxBatch, len(decisions))]
		if err := a.batch(ctx, start, batch); err != nil {
			return res, err
		}
	}
	if err := st.RunAddCounts(ctx, run.ID, fmt.Sprintf("item:%d", len(decisions)), ledger.RunCounts{Skipped: int64(len(res.Skipped) + len(res.Changed))}); err != nil {
		return res, err
	}
	if err := st.RunFinish(ctx, run.ID); err != nil {
		return res, err
	}
	count(res)
	return res, nil
}

// applier applies the decisions of run runID, one queue batch at a time,
// recording into res what it did.
type applier struct {
	st    *ledger.Store
	q     *queue.Queue
	o     Options
	runID string
	cands map[string]ledger.AssignCandidate
	res   *Result
}

// batch applies the decisions at start..start+len(batch): each Assign
// updates the photo row (only if it is still the row that was checked),
// then the assigned and resent photos are enqueued together and marked
// enqueued, and the run's counts and cursor advance past the batch.
func (a *applier) batch(ctx context.Context, start int, batch []Decision) error {
	var send []Decision
	var add ledger.RunCounts
	for _, d := range batch {
		add.Found++
		switch d.Action {
		case Unchanged:
			a.res.Decisions = append(a.res.Decisions, d)
			continue
		case Assign:
			c := a.cands[d.PhotoID]
			ok, err := a.st.PhotoAssignOwner(ctx, ledger.AssignInput{
				PhotoID: d.PhotoID, OwnerID: d.OwnerID, RunID: a.runID, By: a.o.By, Source: d.Source(a.o.Source),
				OldStatus: c.OldStatus, Keys: c.Photo.Keys,
			})
			if err != nil {
				return err
			}
			if !ok {
				a.res.Changed = append(a.res.Changed, Invalid{Line: d.Line, PhotoID: d.PhotoID, OwnerID: d.OwnerID,
					Reason: "the photo's row changed since it was checked (it is no longer archived and ownerless with the same keys); left alone: check it and run again"})
				continue
			}
			d.RunID = a.runID
		}
		send = append(send, d)
	}
	if len(send) > 0 {
		if err := a.send(ctx, send); err != nil {
			return err
		}
		add.Enqueued = int64(len(send))
	}
	return a.st.RunAddCounts(ctx, a.runID, fmt.Sprintf("item:%d", start+len(batch)), add)
}

// send enqueues the photos of send in one batch, then marks their
// assignments enqueued: a failure between the two leaves them assigned and
// not marked, so running the same command again resends them.
func (a *applier) send(ctx context.Context, send []Decision) error {
	bodies := make([]string, len(send))
	ids := make([]string, len(send))
	for i, d := range send {
		bodies[i] = queue.Encode(queue.Message{PhotoID: d.PhotoID, RunID: d.RunID})
		ids[i] = d.PhotoID
	}
	if err := a.q.SendBatch(ctx, bodies, time.Minute); err != nil {
		return fmt.Errorf("enqueue %d assigned photos: %w (they are assigned; run the same command again to send them)", len(send), err)
	}
	if err := a.st.AssignmentMarkEnqueued(ctx, ids); err != nil {
		return err
	}
	a.res.Decisions = append(a.res.Decisions, send...)
	return nil
}

func count(res *Result) {
	for _, d := range res.Decisions {
		switch d.Action {
		case Assign:
			res.Assigned++
		case Resend:
			res.Resent++
		case Unchanged:
			res.Noop++
		}
	}
}

func newRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "assign-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
