package storage

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// PhotoRow is what Resolve needs of a photos row: its id, owner and key
// columns (photos.id, owner_id, original_key, processed_key, thumbnail_key).
// The application reads it with its own query; ledger.Photo has the same
// fields.
type PhotoRow struct {
	ID           string
	OwnerID      *string
	OriginalKey  string
	ProcessedKey *string
	ThumbnailKey *string
}

// Resolved is the key to read for one object of a photo during the dual-write
// phase. Only Resolve and ResolveAnimation make one, for one acting user, and
// only GetResolved reads it: a Resolved made any other way, or handed to
// another user, is refused.
type Resolved struct {
	// Key is the key to read.
	Key string
	// Legacy is true when Key is the legacy key (the object has not been
	// migrated or rewritten under users/ yet).
	Legacy bool
	// userID is the user it was resolved for.
	userID string
}

// Resolve returns the key to read for one of row's objects while new objects
// are written under users/ but the backfill has not finished: the user-scoped
// key if that object exists (or the row already points there), otherwise the
// legacy key recorded in the row. kind is original, restored, thumbnail or
// metadata (metadata is not a column: its legacy key is derived from the job
// named by the row's legacy original key). A row whose column is NULL gives an
// error wrapping ErrNotFound. The acting user must be the row's owner.
func (s *Service) Resolve(ctx context.Context, userID string, row PhotoRow, kind keylayout.Kind) (Resolved, error) {
	const op = "resolve"
	if err := checkRow(op, userID, row); err != nil {
		return Resolved{}, err
	}
	switch kind {
	case keylayout.KindOriginal:
		return s.resolveColumn(ctx, op, userID, row, kind, "original_key", &row.OriginalKey)
	case keylayout.KindRestored:
		return s.resolveColumn(ctx, op, userID, row, kind, "processed_key", row.ProcessedKey)
	case keylayout.KindThumbnail:
		return s.resolveColumn(ctx, op, userID, row, kind, "thumbnail_key", row.ThumbnailKey)
	case keylayout.KindMetadata:
		return s.resolveDerived(ctx, op, userID, row, Metadata(row.ID), func(jobID string) string {
			return keylayout.LegacyMetadataKey(jobID)
		})
	}
	return Resolved{}, fmt.Errorf("resolve photo %s: kind %q: want original, restored, thumbnail or metadata (animations: ResolveAnimation): %w", row.ID, kind, ErrInvalidRequest)
}

// ResolveAnimation is Resolve for one animation of row's photo, named by its
// animation id and suffix (the legacy key is animated/{job}/{animation}_{suffix}.mp4).
func (s *Service) ResolveAnimation(ctx context.Context, userID string, row PhotoRow, animationID, suffix string) (Resolved, error) {
	const op = "resolve"
	if err := checkRow(op, userID, row); err != nil {
		return Resolved{}, err
	}
	return s.resolveDerived(ctx, op, userID, row, Animation(row.ID, animationID, suffix), func(jobID string) string {
		return keylayout.LegacyAnimationKey(jobID, animationID, suffix)
	})
}

// GetResolved opens what Resolve returned, for the user it was resolved for.
// It is the only read outside users/{user}/ the service makes, and only of a
// legacy key recorded in (or derived from) a row that user owns.
func (s *Service) GetResolved(ctx context.Context, userID string, r Resolved) (*Object, error) {
	const op = "get"
	if err := checkUser(op, userID); err != nil {
		return nil, err
	}
	if r.userID != userID {
		return nil, refuse(op, userID, r.Key, ReasonNotOwner, fmt.Errorf("resolved for user %q", r.userID))
	}
	if !r.Legacy {
		return s.GetKey(ctx, userID, r.Key)
	}
	if _, err := keylayout.ParseLegacy(r.Key); err != nil {
		return nil, refuse(op, userID, r.Key, ReasonOutsidePrefix, err)
	}
	return s.get(ctx, r.Key)
}

// checkRow: the acting user must own the row, and its id must be valid.
func checkRow(op, userID string, row PhotoRow) error {
	if err := checkUser(op, userID); err != nil {
		return err
	}
	if err := checkPhotoID(op, userID, row.ID); err != nil {
		return err
	}
	if row.OwnerID == nil {
		return refuse(op, userID, row.ID, ReasonNotOwner, fmt.Errorf("photo %s has no owner", row.ID))
	}
	if *row.OwnerID != userID {
		return refuse(op, userID, row.ID, ReasonNotOwner, fmt.Errorf("photo %s belongs to user %q", row.ID, *row.OwnerID))
	}
	return nil
}

func (s *Service) resolveColumn(ctx context.Context, op, userID string, row PhotoRow, kind keylayout.Kind, column string, value *string) (Resolved, error) {
	if value == nil || *value == "" {
		return Resolved{}, fmt.Errorf("resolve photo %s: %s is empty: %w", row.ID, column, ErrNotFound)
	}
	k := *value
	if keylayout.IsUserScoped(k) {
		u, err := checkKey(op, userID, k)
		if err != nil {
			return Resolved{}, err
		}
		if u.Kind != kind || u.PhotoID != row.ID {
			return Resolved{}, refuse(op, userID, k, ReasonUnsafeKey, fmt.Errorf("%s of photo %s holds the %s of photo %s", column, row.ID, u.Kind, u.PhotoID))
		}
		return Resolved{Key: k, userID: userID}, nil
	}
	l, err := keylayout.ParseLegacy(k)
	if err != nil {
		return Resolved{}, refuse(op, userID, k, ReasonOutsidePrefix, fmt.Errorf("%s of photo %s: %w", column, row.ID, err))
	}
	if l.Kind != kind {
		return Resolved{}, refuse(op, userID, k, ReasonOutsidePrefix, fmt.Errorf("%s of photo %s holds a %s key", column, row.ID, l.Kind))
	}
	// The same function the migration's worker uses to plan this move.
	target, err := l.UserScoped(userID, row.ID)
	if err != nil {
		return Resolved{}, refuse(op, userID, k, ReasonInvalidObject, err)
	}
	return s.prefer(ctx, userID, target, k)
}

// resolveDerived resolves the kinds no column records (metadata, animations):
// where they are follows from where the original is.
func (s *Service) resolveDerived(ctx context.Context, op, userID string, row PhotoRow, r Ref, legacyKey func(jobID string) string) (Resolved, error) {
	target, err := key(op, userID, r)
	if err != nil {
		return Resolved{}, err
	}
	if keylayout.IsUserScoped(row.OriginalKey) {
		// The worker copies every object of a photo before it swaps the row,
		// and Phase 1 uploads were never anywhere else: once the original is
		// user-scoped, so is everything else.
		if _, err := checkKey(op, userID, row.OriginalKey); err != nil {
			return Resolved{}, err
		}
		return Resolved{Key: target, userID: userID}, nil
	}
	l, err := keylayout.ParseLegacy(row.OriginalKey)
	if err != nil || l.Kind != keylayout.KindOriginal {
		return Resolved{}, refuse(op, userID, row.OriginalKey, ReasonOutsidePrefix, fmt.Errorf("original_key of photo %s is not a legacy original: %v", row.ID, err))
	}
	legacy := legacyKey(l.JobID)
	if lk, err := keylayout.ParseLegacy(legacy); err != nil || lk.Kind != r.Kind {
		return Resolved{}, refuse(op, userID, legacy, ReasonInvalidObject, err)
	}
	return s.prefer(ctx, userID, target, legacy)
}

// prefer returns target if it exists, else legacy.
func (s *Service) prefer(ctx context.Context, userID, target, legacy string) (Resolved, error) {
	ok, err := s.exists(ctx, target)
	if err != nil {
		return Resolved{}, err
	}
	if ok {
		return Resolved{Key: target, userID: userID}, nil
	}
	return Resolved{Key: legacy, Legacy: true, userID: userID}, nil
}

// exists asks by listing with the key as prefix rather than by HEAD: on AWS a
// HEAD of a missing key answers 403, not 404, unless the caller may list the
// bucket, and the application and per-user roles may list only under a
// prefix. A listing under users/{user}/ is exactly what they may do, and its
// first key (keys sort after their prefixes) is the key itself if it exists.
func (s *Service) exists(ctx context.Context, k string) (bool, error) {
	out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &k, MaxKeys: aws.Int32(1)})
	if err != nil {
		return false, fmt.Errorf("look for s3://%s/%s: %w", s.bucket, k, err)
	}
	return len(out.Contents) > 0 && aws.ToString(out.Contents[0].Key) == k, nil
}
