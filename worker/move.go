package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/smithy-go"

	"github.com/keymigrate/keymigrate/internal/failure"
	"github.com/keymigrate/keymigrate/internal/ledger"
	"github.com/keymigrate/keymigrate/internal/objstore"
)

// moveResult is one verified move and whether bytes were copied for it (false
// when an earlier attempt's copy was found intact).
type moveResult struct {
	ledger.ObjectMove
	Copied bool
}

// move copies one object to its new key and verifies the copy. It never
// deletes anything and never overwrites bytes it did not write itself.
func (w *Worker) move(ctx context.Context, photoID string, m Move) (moveResult, error) {
	src, err := w.objects.Head(ctx, m.Old)
	if errors.Is(err, objstore.ErrNotFound) {
		return moveResult{}, failure.Permanent(failure.SourceMissing, fmt.Errorf("photo %s: legacy %s object %s does not exist", photoID, m.Kind, m.Old))
	}
	if err != nil {
		return moveResult{}, err
	}

	overwrite := ""
	dst, err := w.objects.Head(ctx, m.New)
	switch {
	case err == nil:
		v, err := w.objects.Verify(ctx, src, dst)
		if err != nil {
			return moveResult{}, err
		}
		if v.Equal {
			// An earlier attempt (or a concurrent worker) already copied it.
			return moveResult{ObjectMove: record(m, src, dst, v)}, nil
		}
		// Different bytes at the new key. Overwrite them only if they are the
		// ledger's own earlier copy (its source changed since); anything else
		// was written by someone else, maybe the app, and is not ours to replace.
		rec, ok, err := w.store.CopyRecordOf(ctx, m.New)
		if err != nil {
			return moveResult{}, err
		}
		if !ok || rec.PhotoID != photoID || rec.ETag != dst.ETag {
			return moveResult{}, failure.Permanentf(failure.DestinationConflict,
				"photo %s: %s already exists with different content (%s) and keymigrate did not write it; refusing to overwrite", photoID, m.New, v.Reason)
		}
		overwrite = dst.ETag
	case !errors.Is(err, objstore.ErrNotFound):
		return moveResult{}, err
	}

	if _, err := w.objects.Copy(ctx, src, m.New, overwrite); err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidObjectState" {
			return moveResult{}, failure.Permanent(failure.SourceUnreadable, fmt.Errorf("photo %s: %s is in an archive storage class and must be restored first: %w", photoID, m.Old, err))
		}
		// ErrPrecondition (the source changed, or the destination appeared) is
		// transient: the next attempt reads both again.
		return moveResult{}, err
	}
	dst, err = w.objects.Head(ctx, m.New)
	if err != nil {
		return moveResult{}, fmt.Errorf("photo %s: read back copy %s: %w", photoID, m.New, err)
	}
	if err := w.store.RecordCopy(ctx, photoID, ledger.ObjectMove{
		Kind: string(m.Kind), OldKey: m.Old, NewKey: m.New, Size: dst.Size,
		SourceETag: src.ETag, ETag: dst.ETag, ContentType: dst.ContentType,
	}); err != nil {
		return moveResult{}, err
	}
	if w.cfg.Hooks.AfterCopy != nil {
		if err := w.cfg.Hooks.AfterCopy(ctx, photoID, m.New); err != nil {
			return moveResult{}, err
		}
	}
	v, err := w.objects.Verify(ctx, src, dst)
	if err != nil {
		return moveResult{}, err
	}
	if !v.Equal {
		// Transient: the next attempt finds the ledger's copy, and replaces it.
		return moveResult{}, fmt.Errorf("photo %s: copy %s of %s does not match its source: %s", photoID, m.New, m.Old, v.Reason)
	}
	return moveResult{ObjectMove: record(m, src, dst, v), Copied: true}, nil
}

func record(m Move, src, dst objstore.Info, v objstore.Verdict) ledger.ObjectMove {
	return ledger.ObjectMove{
		Kind: string(m.Kind), OldKey: m.Old, NewKey: m.New, Size: dst.Size,
		SourceETag: src.ETag, ETag: dst.ETag, ChecksumAlgorithm: string(v.Algorithm), Checksum: v.Checksum,
		VerifyMethod: v.Method, ContentType: dst.ContentType,
	}
}
