package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/failure"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// moveResult is one verified move and whether bytes were copied for it (false
// when an earlier attempt's copy was found intact, or the application
// superseded the object). unread is set instead for a copy made before its
// source was read (copy first): readSources proves it, or refuses it. late
// is set instead for the metadata's copy on the copy-first path, sent in
// the background (moveFirst): readSources joins it.
type moveResult struct {
	ledger.ObjectMove
	Copied bool
	unread *copied
	late   *lateCopy
}

// copied is a move whose bytes were written and await verification. res is
// what the write itself returned: its ETag is keymigrate's, and every later
// read of the copy is pinned to it. unread marks a copy made first, before any
// read of its source (src then holds only the key): the read of the source
// after the copy is what proves which bytes it holds.
type copied struct {
	move   Move
	src    objstore.Info
	res    objstore.CopyResult
	unread bool
}

// errReplan ends an attempt early because the application changed the row
// while its objects were being copied: the caller re-reads and re-plans.
var errReplan = errors.New("the photo's row changed")

// rowSettle is how long a destination conflict on a column's object waits
// for the application to update the row: the application writes the
// user-scoped object first and points the column at it a moment later.
const rowSettle = 2 * time.Second

func intents(moves []Move) []ledger.Intent {
	out := make([]ledger.Intent, len(moves))
	for i, m := range moves {
		out[i] = ledger.Intent{Kind: string(m.Kind), OldKey: m.Old, NewKey: m.New}
	}
	return out
}

// moveAll copies every planned object (up to ObjectConcurrency at once, so a
// photo takes about as long as its slowest object), records the ETag each
// copy's write returned in one statement, then verifies each copy against its
// source: from the copy's own response where the fleet found the server keeps
// everything a COPY should (no read of the copy at all), otherwise by reading
// it back pinned to that ETag. It never deletes anything and never overwrites
// bytes keymigrate did not write itself.
//
// When one copy fails, no further copy starts, but the copies already under
// way are awaited, not abandoned: a copy whose request was cancelled may still
// land, and keymigrate would never learn the ETag of its own write. Every copy
// that landed is recorded before the failure is returned, so that a photo
// dead-lettered for it can discard them (settle), conditionally on their ETags.
func (w *Worker) moveAll(ctx context.Context, p ledger.Photo, plan []Move, careful bool) ([]moveResult, error) {
	r := w.newCopyRun(p, !careful && w.copyFirst())
	r.add(ctx, plan)
	return r.finish(ctx)
}

// copyRun is moveAll's copies, added in batches (the copy-first path adds
// the listed animations once the listing answered, while the first batch's
// copies are under way) and finished together.
type copyRun struct {
	w         *Worker
	p         ledger.Photo
	copyFirst bool
	g         errgroup.Group // no shared cancellation: see moveAll
	failed    atomic.Bool

	mu      sync.Mutex
	moves   []Move
	results []moveResult
	pending []*copied
}

func (w *Worker) newCopyRun(p ledger.Photo, copyFirst bool) *copyRun {
	r := &copyRun{w: w, p: p, copyFirst: copyFirst}
	r.g.SetLimit(w.cfg.ObjectConcurrency)
	return r
}

// add starts the copies of moves (up to ObjectConcurrency at once, with those
// already under way). After a failure, no further copy starts.
func (r *copyRun) add(ctx context.Context, moves []Move) {
	for _, m := range moves {
		r.mu.Lock()
		i := len(r.moves)
		r.moves = append(r.moves, m)
		r.results = append(r.results, moveResult{})
		r.pending = append(r.pending, nil)
		r.mu.Unlock()
		r.g.Go(func() error {
			if r.failed.Load() {
				return nil
			}
			start := time.Now()
			res, c, err := r.w.copyOne(ctx, r.p, m, r.copyFirst && m.Source == nil)
			if err != nil {
				r.failed.Store(true)
				return err
			}
			r.w.cfg.Metrics.Observe(observe.CopyHist, time.Since(start).Seconds())
			r.mu.Lock()
			r.results[i], r.pending[i] = res, c
			r.mu.Unlock()
			return nil
		})
	}
}

// fail stops any further copy from starting: what fails outside the copies
// (the listing, the intents of what it found) fails the run as a copy would.
func (r *copyRun) fail() { r.failed.Store(true) }

// finish awaits every copy, records those that landed, and verifies them.
func (r *copyRun) finish(ctx context.Context) ([]moveResult, error) {
	w, p := r.w, r.p
	copyErr := r.g.Wait()
	results, pending := r.results, r.pending
	records, err := w.recordCopies(ctx, p, pending)
	if err := errors.Join(copyErr, err); err != nil {
		return nil, err
	}
	if len(records) == 0 {
		return results, nil
	}
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(w.cfg.ObjectConcurrency)
	for i, c := range pending {
		if c == nil {
			continue
		}
		eg.Go(func() error {
			if c.unread {
				// Proven by readSources, by the read of its source that
				// is also the recheck before the swap.
				results[i] = moveResult{unread: c}
				if w.hooks.afterCopy != nil {
					return w.hooks.afterCopy(gctx, p.ID, c.move.New)
				}
				return nil
			}
			r, err := w.verifyCopy(gctx, p, c)
			results[i] = r
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	return results, nil
}

// recordCopies records in one statement the ETag each landed copy's write
// returned (pending holds nil where nothing was written).
func (w *Worker) recordCopies(ctx context.Context, p ledger.Photo, pending []*copied) ([]ledger.ObjectMove, error) {
	var records []ledger.ObjectMove
	for _, c := range pending {
		if c != nil {
			records = append(records, ledger.ObjectMove{
				Kind: string(c.move.Kind), OldKey: c.move.Old, NewKey: c.move.New, Size: c.src.Size,
				SourceETag: c.src.ETag, ETag: c.res.ETag, ContentType: c.src.ContentType,
			})
		}
	}
	if len(records) == 0 {
		return nil, nil
	}
	return records, w.store.ObjectMoveRecordCopies(ctx, p.ID, records)
}

// verifyCopy verifies one copy against its source.
func (w *Worker) verifyCopy(ctx context.Context, p ledger.Photo, c *copied) (moveResult, error) {
	if w.hooks.afterCopy != nil {
		if err := w.hooks.afterCopy(ctx, p.ID, c.move.New); err != nil {
			return moveResult{}, err
		}
	}
	start := time.Now()
	defer func() { w.cfg.Metrics.Observe(observe.VerifyHist, time.Since(start).Seconds()) }()
	if w.objects.Capabilities().CopyKeepsHeaders && !c.res.Multipart {
		// The write's own response proves the copy: no request at all.
		dst := objstore.FromResponse(c.src, c.res)
		if v := objstore.Compare(c.src, dst); v.Equal {
			v.Method += " (copy response)"
			r := moveResult{ObjectMove: record(c.move, c.src, dst, v), Copied: true}
			return r, nil
		}
	}
	dst, err := w.objects.HeadIfMatch(ctx, c.move.New, c.res.ETag)
	switch {
	case errors.Is(err, objstore.ErrPrecondition):
		// Someone else wrote the key after keymigrate's copy landed.
		return w.conflict(ctx, p, c.move, c.src, "it was overwritten after keymigrate copied it")
	case errors.Is(err, objstore.ErrNotFound):
		// Deleted right after the copy: by the application deleting the
		// photo, most likely. The next attempt reads the row again.
		return moveResult{}, fmt.Errorf("photo %s: copy %s vanished right after it was made", p.ID, c.move.New)
	case err != nil:
		return moveResult{}, fmt.Errorf("photo %s: read back copy %s: %w", p.ID, c.move.New, err)
	}
	v, err := w.objects.Verify(ctx, c.src, dst)
	if err != nil {
		return moveResult{}, err
	}
	if !v.Equal {
		// Transient: the copy is keymigrate's own (pinned), so the next
		// attempt may replace it.
		return moveResult{}, fmt.Errorf("photo %s: copy %s of %s does not match its source: %s", p.ID, c.move.New, c.move.Old, v.Reason)
	}
	r := moveResult{ObjectMove: record(c.move, c.src, dst, v), Copied: true}
	r.ETag = c.res.ETag
	return r, nil
}

// copyFirst reports whether a source need not be read before its copy: where
// the server was found to keep every header on a copy (so that the copy's own
// response, checked against a read of the source made after it, proves it),
// the bucket keeps no per-object ACLs (which only a read reports), and no
// source one CopyObject can copy would be copied in parts (CopiesUnread).
func (w *Worker) copyFirst() bool {
	c := w.objects.Capabilities()
	return w.cfg.CopyFirst && c.CopyKeepsHeaders && !c.ACLs && w.objects.CopiesUnread()
}

// copyOne copies one object. It returns either a finished result (the
// destination already held a faithful copy, or the application's own newer
// object) or the copy to verify. first asks for the copy first, without
// reading the source; whatever that path cannot settle (an object at the
// destination, a missing or archived source) takes the careful path below.
func (w *Worker) copyOne(ctx context.Context, p ledger.Photo, m Move, first bool) (moveResult, *copied, error) {
	if first {
		c, err := w.copyUnread(ctx, m)
		if err != nil || c != nil {
			return moveResult{}, c, err
		}
	}
	src, dst, dstErr, err := w.readBeforeCopy(ctx, p, m)
	if err != nil {
		return moveResult{}, nil, err
	}
	return w.copyRead(ctx, p, m, src, dst, dstErr)
}

// copyRead is copyOne's careful path once its reads are made: src, the
// source's HEAD, which the copy is pinned to, and, where the server does not
// enforce conditional copies, dst, the destination's HEAD (or its error
// dstErr), made right before.
func (w *Worker) copyRead(ctx context.Context, p ledger.Photo, m Move, src, dst objstore.Info, dstErr error) (moveResult, *copied, error) {
	// Where the server enforces If-None-Match on CopyObject, the copy itself
	// refuses to replace an existing object, atomically; elsewhere the
	// destination is read first (a small window remains, see the README).
	overwrite := ""
	if !w.objects.ConditionalCopy() {
		r, done, etag, err := w.judgeExisting(ctx, p, m, src, dst, dstErr)
		if err != nil || done {
			return r, nil, err
		}
		overwrite = etag
	}
	// The ETag the copy will have goes into the ledger before the write that
	// creates it is sent: should its response be lost, the next attempt
	// still knows the copy as keymigrate's own and does not take it for
	// someone else's bytes when the source has changed since (F12, see
	// judgeExisting and discard).
	pin := func(etag string) error {
		return w.store.ObjectMovePinSource(ctx, p.ID, m.New, ledger.SourcePin{ETag: etag, Size: src.Size})
	}
	res, err := w.objects.CopyExpecting(ctx, src, m.New, overwrite, pin)
	if errors.Is(err, objstore.ErrPrecondition) && overwrite == "" {
		// The destination exists, or the source changed since its HEAD.
		r, done, etag, xerr := w.existing(ctx, p, m, src)
		if xerr != nil || done {
			return r, nil, xerr
		}
		if etag == "" {
			return moveResult{}, nil, fmt.Errorf("photo %s: %s changed during its copy: %w", p.ID, m.Old, err)
		}
		overwrite = etag
		res, err = w.objects.CopyExpecting(ctx, src, m.New, overwrite, pin)
	}
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidObjectState" {
			return moveResult{}, nil, failure.Permanent(failure.SourceUnreadable, fmt.Errorf("photo %s: %s is in an archive storage class and must be restored first: %w", p.ID, m.Old, err))
		}
		// ErrPrecondition (the source changed, or the destination changed) is
		// transient: the next attempt reads both again.
		return moveResult{}, nil, err
	}
	return moveResult{}, &copied{move: m, src: src, res: res}, nil
}

// copyUnread copies m without reading its source first. It returns nil, nil
// when the careful path must decide instead: something is at the destination
// (keymigrate's earlier copy, or bytes someone else wrote, which only the
// careful path judges), or the copy failed in a way that path reports
// properly (a missing source, an archived one). Where the server does not
// enforce If-None-Match on CopyObject the destination is read first, as on
// the careful path.
func (w *Worker) copyUnread(ctx context.Context, m Move) (*copied, error) {
	if !w.objects.ConditionalCopy() {
		_, err := w.objects.Head(ctx, m.New)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, objstore.ErrNotFound) {
			return nil, err
		}
	}
	res, err := w.objects.CopyUnread(ctx, m.Old, m.New)
	var re *awshttp.ResponseError
	switch {
	case err == nil:
		return &copied{move: m, src: objstore.Info{Key: m.Old}, res: res, unread: true}, nil
	case errors.Is(err, objstore.ErrPrecondition), errors.Is(err, objstore.ErrNotFound),
		errors.As(err, &re) && re.HTTPStatusCode() >= 400 && re.HTTPStatusCode() < 500,
		errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotImplemented:
		// The destination exists, the source is missing, archived, or too
		// large for one CopyObject, or the server does not implement what
		// the unread copy asks (501: it would answer the same to every
		// redelivery, so the photo would never move): the careful path
		// reads and decides.
		return nil, nil
	}
	return nil, err
}

// readBeforeCopy makes the reads a copy needs, at once, since none depends on
// another: the source's HEAD (unless planning already made it), its ACL where
// ACLs apply, and, where the server does not enforce conditional copies, the
// destination's HEAD (returned with its own error, which existing judges;
// ErrNotFound is the usual answer). A worker far from S3 then waits one round
// trip before the copy, not three. The destination is still read before the
// copy is sent, as existing requires.
func (w *Worker) readBeforeCopy(ctx context.Context, p ledger.Photo, m Move) (src, dst objstore.Info, dstErr, err error) {
	var (
		wg             sync.WaitGroup
		srcErr, aclErr error
		acl            string
	)
	if m.Source != nil {
		src = *m.Source
	} else {
		wg.Go(func() { src, srcErr = w.objects.Head(ctx, m.Old) })
	}
	acls := w.objects.Capabilities().ACLs
	if acls {
		wg.Go(func() { acl, aclErr = w.objects.ACLNotCarried(ctx, m.Old) })
	}
	if !w.objects.ConditionalCopy() {
		wg.Go(func() { dst, dstErr = w.objects.Head(ctx, m.New) })
	}
	wg.Wait()
	if errors.Is(srcErr, objstore.ErrNotFound) {
		return src, dst, nil, failure.Permanent(failure.SourceMissing, fmt.Errorf("photo %s: legacy %s object %s does not exist", p.ID, m.Kind, m.Old))
	}
	if err := errors.Join(srcErr, aclErr); err != nil {
		return src, dst, nil, err
	}
	if acls {
		src.ACL = acl
	}
	return src, dst, dstErr, nil
}

// existing deals with an object that may already be at the destination. done
// is true when nothing is left to copy: it is a faithful copy of src, or the
// application's own object superseding a metadata or animation. Otherwise etag
// is the ETag the copy may replace: set only when the ledger shows keymigrate
// wrote those bytes itself (an earlier copy whose source has since changed).
// Bytes the ledger does not know were written by someone else and are never
// overwritten. An absent destination returns etag "".
func (w *Worker) existing(ctx context.Context, p ledger.Photo, m Move, src objstore.Info) (r moveResult, done bool, etag string, err error) {
	dst, err := w.objects.Head(ctx, m.New)
	return w.judgeExisting(ctx, p, m, src, dst, err)
}

// judgeExisting is existing with the destination's HEAD (dst, or its error
// headErr) already made.
func (w *Worker) judgeExisting(ctx context.Context, p ledger.Photo, m Move, src, dst objstore.Info, headErr error) (r moveResult, done bool, etag string, err error) {
	if errors.Is(headErr, objstore.ErrNotFound) {
		return moveResult{}, false, "", nil
	}
	if headErr != nil {
		return moveResult{}, false, "", headErr
	}
	rec, known, err := w.store.ObjectMoveGetCopy(ctx, m.New)
	if err != nil {
		return moveResult{}, false, "", err
	}
	if known && rec.Superseded {
		r, err := w.conflict(ctx, p, m, src, "the application wrote it")
		return r, err == nil, "", err
	}
	v, err := w.objects.Verify(ctx, src, dst)
	if err != nil {
		return moveResult{}, false, "", err
	}
	ours := known && rec.PhotoID == p.ID && rec.ETag != "" && rec.ETag == dst.ETag
	if v.Equal && m.redo && ours {
		// keymigrate's own copy made first, which its source's read did not
		// prove: replaced by a copy pinned to the source's HEAD.
		return moveResult{}, false, dst.ETag, nil
	}
	if v.Equal && ours && objstore.ClassDiffers(src, dst) != "" {
		// keymigrate's own copy (known by its write's ETag, never by a
		// read: invariant 9) made first, without the source's class or
		// encryption, by a process that stopped before proving it or by a
		// second worker on the photo: replaced by a copy pinned to the
		// source's HEAD. (A copy made first whose ETag was never recorded,
		// the process killed between the copy and its record, is accepted
		// as it is: bytes and headers equal, the class possibly not.)
		return moveResult{}, false, dst.ETag, nil
	}
	if v.Equal {
		// An earlier attempt (or a concurrent worker, or a process killed
		// before it recorded its copy) already copied exactly these bytes.
		return moveResult{ObjectMove: record(m, src, dst, v)}, true, "", nil
	}
	if ours {
		// keymigrate's own earlier copy, of a source that has since changed.
		return moveResult{}, false, dst.ETag, nil
	}
	if known && rec.PhotoID == p.ID && rec.PinnedAs(dst.ETag, dst.Size) {
		// keymigrate's own earlier copy whose response was lost (so its
		// write's ETag was never recorded), of a source that has since
		// changed: its ETag and size are those a copy to this key was
		// expected to have, recorded before that copy was sent (F12).
		// Copied again from the current source, conditionally on that ETag.
		return moveResult{}, false, dst.ETag, nil
	}
	r, err = w.conflict(ctx, p, m, src, fmt.Sprintf("it holds other content (%s) that keymigrate did not write", v.Reason))
	return r, err == nil, "", err
}

// conflict decides what bytes someone else wrote at a new key mean. Under
// Phase 1 only the application writes users/{owner}/, on the owner's behalf:
//   - for metadata and animations (no column references them, and the
//     application already reads the user-scoped key when it exists) the
//     application's object supersedes the legacy one: recorded as such, never
//     touched, and the rest of the photo is migrated;
//   - for a column's object, the application points the column at its new
//     object a moment after writing it: if the row changes, the photo is
//     re-planned; if it does not, the row is left alone and the photo
//     dead-lettered as destination_conflict for a person to look at.
func (w *Worker) conflict(ctx context.Context, p ledger.Photo, m Move, src objstore.Info, why string) (moveResult, error) {
	if m.Kind == keylayout.KindMetadata || m.Kind == keylayout.KindAnimation {
		return moveResult{ObjectMove: ledger.ObjectMove{
			Kind: string(m.Kind), OldKey: m.Old, NewKey: m.New, Size: src.Size, SourceETag: src.ETag,
			ContentType: src.ContentType, Superseded: true,
		}}, nil
	}
	deadline := time.Now().Add(rowSettle)
	for {
		now, err := w.store.PhotoGet(ctx, p.ID)
		if errors.Is(err, ledger.ErrPhotoNotFound) {
			return moveResult{}, fmt.Errorf("%w: photo %s was deleted", errReplan, p.ID)
		}
		if err != nil {
			return moveResult{}, err
		}
		if !sameRow(now, p) {
			return moveResult{}, fmt.Errorf("%w: %s of photo %s: %s", errReplan, m.New, p.ID, why)
		}
		if time.Now().After(deadline) {
			return moveResult{}, failure.Permanentf(failure.DestinationConflict,
				"photo %s: %s: %s; refusing to overwrite it, and the row still points at %s", p.ID, m.New, why, m.Old)
		}
		select {
		case <-ctx.Done():
			return moveResult{}, ctx.Err()
		case <-time.After(rowSettle / 8):
		}
	}
}

func sameRow(a, b ledger.Photo) bool {
	eq := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.Original == b.Original && eq(a.Processed, b.Processed) && eq(a.Thumbnail, b.Thumbnail) &&
		eq(a.OwnerID, b.OwnerID) && eq(a.Status, b.Status)
}

// discard removes copies that will never be committed: those of a deleted
// photo, of a former owner, of a plan that changed. A copy is deleted only
// while it still has the ETag keymigrate's write returned (conditionally,
// where the server allows); a copy whose ETag was never recorded (the
// process stopped between copy and record, or the copy's response was lost)
// only if its bytes are still those of its legacy source, or if its ETag and
// size are those a copy to that key was expected to have, recorded before
// the copy was sent (ledger.ObjectMove.PinnedAs). Anything else belongs to someone else and
// stays.
//
// Another attempt on the same photo may be about to commit these copies
// (S1 in docs/soak-findings.md). So the discard is claimed in the ledger
// before any delete is sent, and only the claimed moves are deleted: a move
// that attempt committed first is not claimed and stays; a swap that comes
// after the claim refuses the move and re-plans. Each claim is settled once
// its delete answered. A delete that fails otherwise (S3 down, a timeout:
// the request may still land) leaves its claim unsettled and the error is
// returned; intents do not re-open such a move, and after the takeover bound
// a later attempt claims it again and completes the delete. A move under
// another attempt's claim younger than the bound is left to it: discard then
// returns a transient error, and the message comes back later.
//
// A key the photo's row points at is never deleted, whatever it holds: the
// application's column names it, so it is the application's object (see
// rowKeys).
func (w *Worker) discard(ctx context.Context, objs []ledger.ObjectMove) error {
	if len(objs) == 0 {
		return nil
	}
	pointed, err := w.rowKeys(ctx, objs)
	if err != nil {
		return err
	}
	want := make([]ledger.DiscardClaim, 0, len(objs))
	for _, o := range objs {
		etag := ""
		if pointed[o.NewKey] {
			w.warnPointedCopy(ctx, o)
		} else if etag, err = w.discardable(ctx, o); err != nil {
			return err
		}
		// etag "": gone, or not recognisably keymigrate's: claimed and
		// settled at once, left alone.
		want = append(want, ledger.DiscardClaim{NewKey: o.NewKey, ETag: etag})
	}
	return w.discardClaims(ctx, objs[0].PhotoID, want)
}

// rowKeys is the set of keys the rows of objs' photos point at now (none for
// a deleted photo). Found by the 30-minute soak of 2026-12-08 (seed 798473,
// TestADiscardNeverDeletesAKeyTheRowPointsAt): the application wrote its
// object to the key a worker was copying to and pointed the column at it;
// on a server that ignores If-None-Match on CopyObject the copy replaced
// those bytes (the window of docs/guarantees.md 2), the changed row made the
// worker re-plan, and the discard of the move no longer wanted found
// keymigrate's own copy there and deleted it, under the row pointing at it.
// The row is read before the claims: an application that points a column
// at the key after this read wrote it first, and its write changed the
// key's ETag, so the conditional delete misses it (unless that write, too,
// was replaced by a copy in the same window).
func (w *Worker) rowKeys(ctx context.Context, objs []ledger.ObjectMove) (map[string]bool, error) {
	keys := map[string]bool{}
	seen := map[string]bool{}
	for _, o := range objs {
		if seen[o.PhotoID] {
			continue
		}
		seen[o.PhotoID] = true
		p, err := w.store.PhotoGet(ctx, o.PhotoID)
		if errors.Is(err, ledger.ErrPhotoNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("photo %s: read its row before discarding copies: %w", o.PhotoID, err)
		}
		for _, k := range p.Columns() {
			keys[k] = true
		}
	}
	return keys, nil
}

// warnPointedCopy logs a key the photo's row points at that holds
// keymigrate's own copy (its write's ETag) of a move being discarded: the
// application pointed its column at a key whose bytes are keymigrate's, so
// its own upload there was most likely replaced by the copy (F22). Nothing
// can bring those bytes back; the warning is the operator's only trace of
// them. A failed read only loses the warning.
func (w *Worker) warnPointedCopy(ctx context.Context, o ledger.ObjectMove) {
	if o.ETag == "" {
		return
	}
	dst, err := w.objects.Head(ctx, o.NewKey)
	if err != nil || dst.ETag != o.ETag {
		return
	}
	w.log.Warn("the photo's row points at a key that holds keymigrate's copy, not the application's upload: "+
		"on a server that ignores If-None-Match on CopyObject the upload was most likely replaced by the copy; the object is kept",
		zap.String("photo_id", o.PhotoID), zap.String("key", o.NewKey), zap.String("copied_from", o.OldKey), zap.String("etag", dst.ETag))
}

// discardClaims is discard with the ETag each copy may be deleted on already
// decided: it claims, deletes and settles.
func (w *Worker) discardClaims(ctx context.Context, photoID string, want []ledger.DiscardClaim) error {
	claimed, busy, err := w.store.ObjectMoveClaimDiscards(ctx, want, w.cfg.DiscardTakeover)
	if err != nil {
		return err
	}
	settled := make([]ledger.DiscardClaim, 0, len(claimed))
	var errs []error
	for _, c := range claimed {
		if c.ETag != "" {
			if err := w.deleteClaimed(ctx, c); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		settled = append(settled, c)
	}
	if err := w.store.ObjectMoveSettleDiscards(ctx, settled); err != nil {
		errs = append(errs, err)
	}
	if len(busy) > 0 {
		errs = append(errs, fmt.Errorf("photo %s: a discard of %s by another attempt is in flight; retrying later",
			photoID, strings.Join(busy, ", ")))
	}
	return errors.Join(errs...)
}

// deleteClaimed deletes a claimed copy conditionally on its ETag, under a
// timeout well below the takeover bound: once the bound has passed since the
// claim, the request can no longer land (the assumption another attempt's
// takeover rests on; see DiscardTakeover). A copy already gone or no longer
// holding that ETag is done with.
func (w *Worker) deleteClaimed(ctx context.Context, c ledger.DiscardClaim) error {
	dctx, cancel := context.WithTimeout(ctx, w.deleteTimeout())
	defer cancel()
	err := w.objects.DeleteIf(dctx, c.NewKey, c.ETag)
	if err != nil && !errors.Is(err, objstore.ErrNotFound) && !errors.Is(err, objstore.ErrPrecondition) {
		return fmt.Errorf("discard copy %s: %w", c.NewKey, err)
	}
	return nil
}

// deleteTimeout bounds one discard's delete request: 30 s, or a quarter of
// the takeover bound where that is shorter.
func (w *Worker) deleteTimeout() time.Duration {
	return min(30*time.Second, w.cfg.DiscardTakeover/4)
}

// discardable returns the ETag on which discard may delete o's copy, or ""
// when there is nothing there or nothing recognisably keymigrate's. A move
// with a recorded ETag and no pins is deleted on that ETag without a read.
// Otherwise the copy is read: it is keymigrate's if it has the recorded
// ETag, or a pinned ETag and size, or (no ETag recorded)
// the bytes its legacy source holds now.
func (w *Worker) discardable(ctx context.Context, o ledger.ObjectMove) (string, error) {
	if o.ETag != "" && len(o.Pins) == 0 {
		return o.ETag, nil
	}
	dst, err := w.objects.Head(ctx, o.NewKey)
	if errors.Is(err, objstore.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if (o.ETag != "" && dst.ETag == o.ETag) || o.PinnedAs(dst.ETag, dst.Size) {
		return dst.ETag, nil
	}
	if o.ETag != "" {
		return "", nil
	}
	src, err := w.objects.Head(ctx, o.OldKey)
	if errors.Is(err, objstore.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if v, verr := w.objects.Verify(ctx, src, dst); verr == nil && v.Equal {
		return dst.ETag, nil
	}
	return "", nil
}

func record(m Move, src, dst objstore.Info, v objstore.Verdict) ledger.ObjectMove {
	return ledger.ObjectMove{
		Kind: string(m.Kind), OldKey: m.Old, NewKey: m.New, Size: dst.Size,
		SourceETag: src.ETag, ETag: dst.ETag, ChecksumAlgorithm: string(v.Algorithm), Checksum: v.Checksum,
		VerifyMethod: v.Method, ContentType: dst.ContentType, NotCarried: src.NotCarried(),
		// The copy's algorithm may not be the source's (a multipart copy
		// carries the server's default): a rollback restoring the source
		// asks for this one (F13).
		SourceChecksumAlgorithm: string(src.SourceChecksumAlgorithm()),
	}
}
