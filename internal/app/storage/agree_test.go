package storage

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// refFor is how the application names the object a legacy key held.
func refFor(t *testing.T, l keylayout.Legacy, photoID string) Ref {
	t.Helper()
	switch l.Kind {
	case keylayout.KindOriginal:
		return Original(photoID, l.Ext)
	case keylayout.KindRestored:
		return Restored(photoID, l.Ext)
	case keylayout.KindThumbnail:
		return Thumbnail(photoID)
	case keylayout.KindAnimation:
		return Animation(photoID, l.AnimationID, l.Suffix)
	case keylayout.KindMetadata:
		return Metadata(photoID)
	}
	t.Fatalf("kind %q has no Ref constructor", l.Kind)
	return Ref{}
}

// The migration's worker plans every move with keylayout.ParseLegacy(k).
// UserScoped(owner, photo) (worker/plan.go); the StorageService builds keys
// with keylayout too. For every kind, the key the worker moves an object to is
// the key the service writes, reads, deletes, resolves and presigns for that
// object, so changing the layout in keylayout changes both at once.
func TestWorkerAndServiceAgreeOnEveryKind(t *testing.T) {
	t.Parallel()
	b := pureSetup(t)
	ctx := context.Background()
	legacy := []string{
		"uploaded/job-8812.jpg",
		"uploaded/job-8812.HEIC",
		"restored/job-8812/r-77.png",
		"thumbnails/job-8812.jpg",
		"animated/job-8812/a1b2_loop.mp4",
		"animated/job-8812/a1b2_slow_720p.mp4",
		"meta/job-8812.json",
	}
	seen := map[keylayout.Kind]bool{}
	for _, user := range []string{userA, "42"} {
		for _, photo := range []string{photoP, "7"} {
			for _, k := range legacy {
				l, err := keylayout.ParseLegacy(k)
				require.NoError(t, err)
				workerKey, err := l.UserScoped(user, photo)
				require.NoError(t, err)

				ref := refFor(t, l, photo)
				serviceKey, err := b.svc.Key(user, ref)
				require.NoError(t, err)
				require.Equal(t, workerKey, serviceKey, "%s: worker and service disagree", k)

				// The worker's key is one the service accepts from a row for
				// its owner, and refuses for anyone else.
				u, err := checkKey("get", user, workerKey)
				require.NoError(t, err)
				require.Equal(t, l.Kind, u.Kind)
				_, err = checkKey("get", "43", workerKey)
				require.ErrorIs(t, err, ErrForbidden)

				// A photo's objects are all where DeletePhoto looks.
				require.True(t, coveredByPhoto(workerKey, user, photo), "%s not covered by DeletePhoto", workerKey)
				seen[l.Kind] = true
			}
			// Presigned uploads write the original where the worker moves it.
			l, err := keylayout.ParseLegacy("uploaded/job-8812.jpg")
			require.NoError(t, err)
			workerKey, err := l.UserScoped(user, photo)
			require.NoError(t, err)
			up, err := b.svc.PresignUpload(ctx, user, UploadRequest{PhotoID: photo, ContentType: "image/jpeg"})
			require.NoError(t, err)
			require.Equal(t, workerKey, up.Key)
		}
	}
	for _, kind := range keylayout.Kinds {
		require.True(t, seen[kind], "kind %s not compared", kind)
	}
	require.Zero(t, b.requests.Load())
}

func coveredByPhoto(key, user, photo string) bool {
	prefixes, keys := keylayout.PhotoObjects(user, photo)
	for _, p := range prefixes {
		if len(key) > len(p) && key[:len(p)] == p {
			return true
		}
	}
	for _, k := range keys {
		if k == key {
			return true
		}
	}
	return false
}
