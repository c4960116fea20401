package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/smithy-go"

	"github.com/keymigrate/keymigrate/internal/failure"
	"github.com/keymigrate/keymigrate/internal/ledger"
	"github.com/keymigrate/keymigrate/internal/objstore"
	"github.com/keymigrate/keymigrate/internal/observe"
)

// moveResult is one verified move and whether bytes were copied for it (false
// when an earlier attempt's copy was found intact).
type moveResult struct {
	ledger.ObjectMove
	Copied bool
}

// copied is a move whose bytes were written and await verification.
type copied struct {
	move     Move
	src, dst objstore.Info
}

// moveAll copies every planned object, records the copies in the ledger in one
// statement, then verifies each copy against its source. It never deletes
// anything and never overwrites bytes keymigrate did not write itself.
func (w *Worker) moveAll(ctx context.Context, photoID string, plan []Move) ([]moveResult, error) {
	results := make([]moveResult, 0, len(plan))
	var pending []copied
	for _, m := range plan {
		start := time.Now()
		r, c, err := w.copyOne(ctx, photoID, m)
		if err != nil {
			return nil, err
		}
		w.cfg.Metrics.Observe(observe.CopyHist, time.Since(start).Seconds())
		if c != nil {
			pending = append(pending, *c)
		} else {
			results = append(results, r)
		}
	}
	if len(pending) == 0 {
		return results, nil
	}
	records := make([]ledger.ObjectMove, len(pending))
	for i, c := range pending {
		records[i] = ledger.ObjectMove{
			Kind: string(c.move.Kind), OldKey: c.move.Old, NewKey: c.move.New, Size: c.dst.Size,
			SourceETag: c.src.ETag, ETag: c.dst.ETag, ContentType: c.dst.ContentType,
		}
	}
	if err := w.store.RecordCopies(ctx, photoID, records); err != nil {
		return nil, err
	}
	for _, c := range pending {
		if w.cfg.Hooks.AfterCopy != nil {
			if err := w.cfg.Hooks.AfterCopy(ctx, photoID, c.move.New); err != nil {
				return nil, err
			}
		}
		start := time.Now()
		v, err := w.objects.Verify(ctx, c.src, c.dst)
		if err != nil {
			return nil, err
		}
		w.cfg.Metrics.Observe(observe.VerifyHist, time.Since(start).Seconds())
		if !v.Equal {
			// Transient: the next attempt finds the ledger's copy and replaces it.
			return nil, fmt.Errorf("photo %s: copy %s of %s does not match its source: %s", photoID, c.move.New, c.move.Old, v.Reason)
		}
		results = append(results, moveResult{ObjectMove: record(c.move, c.src, c.dst, v), Copied: true})
	}
	return results, nil
}

// copyOne copies one object. It returns either a finished result (the
// destination already held a faithful copy) or the copy to verify.
func (w *Worker) copyOne(ctx context.Context, photoID string, m Move) (moveResult, *copied, error) {
	src, err := w.objects.Head(ctx, m.Old)
	if errors.Is(err, objstore.ErrNotFound) {
		return moveResult{}, nil, failure.Permanent(failure.SourceMissing, fmt.Errorf("photo %s: legacy %s object %s does not exist", photoID, m.Kind, m.Old))
	}
	if err != nil {
		return moveResult{}, nil, err
	}

	// Where the server enforces If-None-Match on CopyObject, the copy itself
	// refuses to replace an existing object, atomically; elsewhere the
	// destination is read first (a small window remains, see the README).
	overwrite := ""
	if !w.objects.ConditionalCopy() {
		r, done, etag, err := w.existing(ctx, photoID, m, src)
		if err != nil || done {
			return r, nil, err
		}
		overwrite = etag
	}
	_, err = w.objects.Copy(ctx, src, m.New, overwrite)
	if errors.Is(err, objstore.ErrPrecondition) && overwrite == "" {
		// The destination exists, or the source changed since its HEAD.
		r, done, etag, xerr := w.existing(ctx, photoID, m, src)
		if xerr != nil || done {
			return r, nil, xerr
		}
		if etag == "" {
			return moveResult{}, nil, fmt.Errorf("photo %s: %s changed during its copy: %w", photoID, m.Old, err)
		}
		overwrite = etag
		_, err = w.objects.Copy(ctx, src, m.New, overwrite)
	}
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidObjectState" {
			return moveResult{}, nil, failure.Permanent(failure.SourceUnreadable, fmt.Errorf("photo %s: %s is in an archive storage class and must be restored first: %w", photoID, m.Old, err))
		}
		// ErrPrecondition (the source changed, or the destination changed) is
		// transient: the next attempt reads both again.
		return moveResult{}, nil, err
	}
	dst, err := w.objects.Head(ctx, m.New)
	if err != nil {
		return moveResult{}, nil, fmt.Errorf("photo %s: read back copy %s: %w", photoID, m.New, err)
	}
	return moveResult{}, &copied{move: m, src: src, dst: dst}, nil
}

// existing deals with an object that may already be at the destination. done
// is true when it is a faithful copy of src (nothing to do). Otherwise etag is
// the ETag the copy may replace: set only when the ledger shows keymigrate
// wrote those bytes itself (an earlier copy whose source has since changed).
// Bytes the ledger does not know were written by someone else, maybe the app,
// and are never overwritten. An absent destination returns etag "".
func (w *Worker) existing(ctx context.Context, photoID string, m Move, src objstore.Info) (r moveResult, done bool, etag string, err error) {
	dst, err := w.objects.Head(ctx, m.New)
	if errors.Is(err, objstore.ErrNotFound) {
		return moveResult{}, false, "", nil
	}
	if err != nil {
		return moveResult{}, false, "", err
	}
	v, err := w.objects.Verify(ctx, src, dst)
	if err != nil {
		return moveResult{}, false, "", err
	}
	if v.Equal {
		// An earlier attempt (or a concurrent worker) already copied it.
		return moveResult{ObjectMove: record(m, src, dst, v)}, true, "", nil
	}
	rec, ok, err := w.store.CopyRecordOf(ctx, m.New)
	if err != nil {
		return moveResult{}, false, "", err
	}
	if !ok || rec.PhotoID != photoID || rec.ETag != dst.ETag {
		return moveResult{}, false, "", failure.Permanentf(failure.DestinationConflict,
			"photo %s: %s already exists with different content (%s) and keymigrate did not write it; refusing to overwrite", photoID, m.New, v.Reason)
	}
	return moveResult{}, false, dst.ETag, nil
}

func record(m Move, src, dst objstore.Info, v objstore.Verdict) ledger.ObjectMove {
	return ledger.ObjectMove{
		Kind: string(m.Kind), OldKey: m.Old, NewKey: m.New, Size: dst.Size,
		SourceETag: src.ETag, ETag: dst.ETag, ChecksumAlgorithm: string(v.Algorithm), Checksum: v.Checksum,
		VerifyMethod: v.Method, ContentType: dst.ContentType,
	}
}
