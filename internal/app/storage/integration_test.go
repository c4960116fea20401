package storage_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

type testBundle struct {
	env *testenv.Env
	svc *storage.Service
	hc  *http.Client
	ctx context.Context
}

// setup gives the test its own bucket on the real S3 server and a Service on it.
func setup(t *testing.T, o storage.Options) testBundle {
	t.Helper()
	env := testenv.New(t, testenv.Options{})
	svc, err := storage.New(env.S3, env.Objects.Bucket(), o)
	require.NoError(t, err)
	return testBundle{env: env, svc: svc, hc: &http.Client{Timeout: time.Minute}, ctx: context.Background()}
}

func newID() string { return uuid.NewString() }

// body returns a function that reads a whole object, to wrap Get's results.
func body(t *testing.T) func(*storage.Object, error) string {
	return func(o *storage.Object, err error) string {
		t.Helper()
		require.NoError(t, err)
		defer o.Body.Close()
		data, err := io.ReadAll(o.Body)
		require.NoError(t, err)
		return string(data)
	}
}

func (b testBundle) exists(t *testing.T, key string) bool {
	t.Helper()
	ok, err := b.env.Objects.Exists(b.ctx, key)
	require.NoError(t, err)
	return ok
}

func TestEveryKindRoundTrips(t *testing.T) {
	t.Parallel()
	b := setup(t, storage.Options{})
	user, other, photo := newID(), newID(), newID()
	refs := []storage.Ref{
		storage.Original(photo, "jpg"),
		storage.Restored(photo, "png"),
		storage.Thumbnail(photo),
		storage.Animation(photo, "a1", "loop"),
		storage.Metadata(photo),
	}
	for _, r := range refs {
		data := "bytes of " + r.String()
		key, err := b.svc.Put(b.ctx, user, r, strings.NewReader(data), int64(len(data)), "")
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(key, keylayout.UserPrefix(user)), key)

		require.Equal(t, data, body(t)(b.svc.Get(b.ctx, user, r)))
		require.Equal(t, data, body(t)(b.svc.GetKey(b.ctx, user, key)))
		info, err := b.svc.Head(b.ctx, user, key)
		require.NoError(t, err)
		require.Equal(t, int64(len(data)), info.Size)

		// The same photo id under another user is another object, which does not exist.
		_, err = b.svc.Get(b.ctx, other, r)
		require.ErrorIs(t, err, storage.ErrNotFound)
		// And the owner's key is refused to the other user.
		_, err = b.svc.GetKey(b.ctx, other, key)
		require.ErrorIs(t, err, storage.ErrForbidden)
	}
	o, err := b.svc.Get(b.ctx, user, storage.Thumbnail(photo))
	require.NoError(t, err)
	require.Equal(t, "image/jpeg", o.ContentType, "default content type of a thumbnail")
	o.Body.Close()

	require.NoError(t, b.svc.Delete(b.ctx, user, storage.Metadata(photo)))
	_, err = b.svc.Get(b.ctx, user, storage.Metadata(photo))
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func TestDeletePhotoRemovesOnlyThatPhoto(t *testing.T) {
	t.Parallel()
	b := setup(t, storage.Options{})
	user, other := newID(), newID()
	put := func(u string, r storage.Ref) string {
		key, err := b.svc.Put(b.ctx, u, r, strings.NewReader("x"), 1, "")
		require.NoError(t, err)
		return key
	}
	all := func(u, p string) []string {
		return []string{
			put(u, storage.Original(p, "jpg")), put(u, storage.Restored(p, "png")), put(u, storage.Thumbnail(p)),
			put(u, storage.Animation(p, "a1", "loop")), put(u, storage.Animation(p, "a2", "slow_720p")), put(u, storage.Metadata(p)),
		}
	}
	doomed := all(user, "1")
	// Something a prefix upload could leave in the photo's directory.
	stray := keylayout.OriginalPrefix(user, "1") + "IMG_0001.jpg"
	b.env.Put(t, stray, []byte("x"), "image/jpeg", nil)
	kept := append(all(user, "12"), all(other, "1")...) // "1/" is not a prefix of "12/"

	n, err := b.svc.DeletePhoto(b.ctx, user, "1")
	require.NoError(t, err)
	require.Equal(t, len(doomed)+1, n)
	for _, k := range append(doomed, stray) {
		require.False(t, b.exists(t, k), "%s survived", k)
	}
	for _, k := range kept {
		require.True(t, b.exists(t, k), "%s was deleted", k)
	}
	n, err = b.svc.DeletePhoto(b.ctx, user, "1")
	require.NoError(t, err, "deleting again is harmless")
	require.Equal(t, 2, n, "the two single-object keys are always asked for")
}

func TestListPhotosPagesOneUser(t *testing.T) {
	t.Parallel()
	b := setup(t, storage.Options{})
	user, other := newID(), newID()
	var want []string
	for _, p := range []string{"1", "2", "3"} {
		_, err := b.svc.Put(b.ctx, user, storage.Original(p, "jpg"), strings.NewReader("x"), 1, "image/jpeg")
		require.NoError(t, err)
		_, err = b.svc.Put(b.ctx, user, storage.Thumbnail(p), strings.NewReader("x"), 1, "")
		require.NoError(t, err)
		want = append(want, p)
	}
	_, err := b.svc.Put(b.ctx, other, storage.Original("9", "png"), strings.NewReader("x"), 1, "image/png")
	require.NoError(t, err)

	var got []string
	cursor := ""
	pages := 0
	for {
		page, err := b.svc.ListPhotos(b.ctx, user, cursor, 2)
		require.NoError(t, err)
		pages++
		for _, p := range page.Photos {
			require.Equal(t, keylayout.OriginalKey(user, p.PhotoID, "jpg"), p.Key)
			require.Equal(t, int64(1), p.Size)
			got = append(got, p.PhotoID)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	require.Equal(t, want, got)
	require.Equal(t, 2, pages)

	page, err := b.svc.ListPhotos(b.ctx, other, "", 0)
	require.NoError(t, err)
	require.Len(t, page.Photos, 1)
	require.Equal(t, "9", page.Photos[0].PhotoID)
}

// During dual write a row may still hold legacy keys: Resolve reads the
// user-scoped object if it exists (the worker copied it, or the app rewrote
// it), else the legacy one.
func TestResolveDuringDualWrite(t *testing.T) {
	t.Parallel()
	b := setup(t, storage.Options{})
	user, photo := newID(), newID()
	job := "job-" + photo[:8]
	original := "uploaded/" + job + ".jpg"
	processed := "restored/" + job + "/r-1.png"
	b.env.Put(t, original, []byte("legacy original"), "image/jpeg", nil)
	b.env.Put(t, processed, []byte("legacy restored"), "image/png", nil)
	b.env.Put(t, keylayout.LegacyMetadataKey(job), []byte(`{"legacy":true}`), "application/json", nil)
	b.env.Put(t, keylayout.LegacyAnimationKey(job, "a1", "loop"), []byte("legacy animation"), "video/mp4", nil)
	row := storage.PhotoRow{ID: photo, OwnerID: &user, OriginalKey: original, ProcessedKey: &processed}

	// Nothing migrated yet: the legacy keys, readable by the owner.
	for kind, want := range map[keylayout.Kind]string{
		keylayout.KindOriginal: original, keylayout.KindRestored: processed, keylayout.KindMetadata: keylayout.LegacyMetadataKey(job),
	} {
		r, err := b.svc.Resolve(b.ctx, user, row, kind)
		require.NoError(t, err)
		require.True(t, r.Legacy)
		require.Equal(t, want, r.Key)
	}
	r, err := b.svc.Resolve(b.ctx, user, row, keylayout.KindOriginal)
	require.NoError(t, err)
	require.Equal(t, "legacy original", body(t)(b.svc.GetResolved(b.ctx, user, r)))
	_, err = b.svc.GetResolved(b.ctx, newID(), r)
	require.ErrorIs(t, err, storage.ErrForbidden, "a resolution is only good for its user")
	ra, err := b.svc.ResolveAnimation(b.ctx, user, row, "a1", "loop")
	require.NoError(t, err)
	require.Equal(t, keylayout.LegacyAnimationKey(job, "a1", "loop"), ra.Key)
	require.Equal(t, "legacy animation", body(t)(b.svc.GetResolved(b.ctx, user, ra)))
	_, err = b.svc.Resolve(b.ctx, user, row, keylayout.KindThumbnail)
	require.ErrorIs(t, err, storage.ErrNotFound, "thumbnail_key is NULL")

	// The original and metadata now exist at their user-scoped keys (copied,
	// row not swapped yet): those win.
	_, err = b.svc.Put(b.ctx, user, storage.Original(photo, "jpg"), strings.NewReader("new original"), 12, "image/jpeg")
	require.NoError(t, err)
	_, err = b.svc.Put(b.ctx, user, storage.Metadata(photo), strings.NewReader(`{}`), 2, "")
	require.NoError(t, err)
	r, err = b.svc.Resolve(b.ctx, user, row, keylayout.KindOriginal)
	require.NoError(t, err)
	require.False(t, r.Legacy)
	require.Equal(t, keylayout.OriginalKey(user, photo, "jpg"), r.Key)
	require.Equal(t, "new original", body(t)(b.svc.GetResolved(b.ctx, user, r)))
	r, err = b.svc.Resolve(b.ctx, user, row, keylayout.KindMetadata)
	require.NoError(t, err)
	require.Equal(t, keylayout.MetadataKey(user, photo), r.Key)
	r, err = b.svc.Resolve(b.ctx, user, row, keylayout.KindRestored)
	require.NoError(t, err)
	require.True(t, r.Legacy, "the restored image was not copied")

	// After the swap the row holds user-scoped keys: used as they are.
	swapped := storage.PhotoRow{ID: photo, OwnerID: &user, OriginalKey: keylayout.OriginalKey(user, photo, "jpg")}
	r, err = b.svc.Resolve(b.ctx, user, swapped, keylayout.KindOriginal)
	require.NoError(t, err)
	require.Equal(t, swapped.OriginalKey, r.Key)
	ra, err = b.svc.ResolveAnimation(b.ctx, user, swapped, "a1", "loop")
	require.NoError(t, err)
	require.Equal(t, keylayout.AnimationKey(user, photo, "a1", "loop"), ra.Key)
	require.False(t, ra.Legacy)
}

// patternReader yields n bytes without holding them.
type patternReader struct{ n int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	p.n -= int64(len(b))
	return len(b), nil
}

// The four cases of issue 4 against versitygw, which enforces POST policies.
// What it answers was checked by hand first: 204 on success, 403 AccessDenied
// for a key the policy does not allow, 400 EntityTooLarge above the range, 403
// AccessDenied "Policy expired" after the expiration (as AWS S3 does).
func TestPresignedUploadIsEnforcedByTheServer(t *testing.T) {
	t.Parallel()
	b := setup(t, storage.Options{UploadMaxBytes: 64 << 10})
	userA, userB, photo := newID(), newID(), newID()
	up, err := b.svc.PresignUpload(b.ctx, userA, storage.UploadRequest{PhotoID: photo, ContentType: "image/jpeg"})
	require.NoError(t, err)
	keyB := keylayout.OriginalKey(userB, photo, "jpg")

	t.Run("own key succeeds", func(t *testing.T) {
		data := "\xff\xd8\xff a jpeg"
		res, err := up.Post(b.ctx, b.hc, strings.NewReader(data), int64(len(data)), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, res.Status, res.String())
		o, err := b.svc.Get(b.ctx, userA, storage.Original(photo, "jpg"))
		require.NoError(t, err)
		require.Equal(t, "image/jpeg", o.ContentType)
		require.Equal(t, data, body(t)(o, nil))
	})
	t.Run("key under another user's prefix is refused", func(t *testing.T) {
		res, err := up.Post(b.ctx, b.hc, strings.NewReader("x"), 1, map[string]string{"key": keyB})
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, res.Status, res.String())
		require.Equal(t, "AccessDenied", res.Code)
		require.False(t, b.exists(t, keyB))
	})
	t.Run("traversal out of the prefix is refused", func(t *testing.T) {
		escape := keylayout.OriginalPrefix(userA, photo) + "../../../" + userB + "/raw/" + photo + "/original.jpg"
		res, err := up.Post(b.ctx, b.hc, strings.NewReader("x"), 1, map[string]string{"key": escape})
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, res.Status, res.String())
		require.False(t, b.exists(t, keyB))
	})
	t.Run("above the size limit is refused", func(t *testing.T) {
		res, err := up.Post(b.ctx, b.hc, &patternReader{n: 64<<10 + 1}, 64<<10+1, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, res.Status, res.String())
		require.Equal(t, "EntityTooLarge", res.Code)
	})
	t.Run("another content type is refused", func(t *testing.T) {
		res, err := up.Post(b.ctx, b.hc, strings.NewReader("<script>"), 8, map[string]string{"Content-Type": "text/html"})
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, res.Status, res.String())
	})
	t.Run("a field the policy does not cover is refused", func(t *testing.T) {
		res, err := up.Post(b.ctx, b.hc, strings.NewReader("x"), 1, map[string]string{"x-amz-meta-owner": userB})
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, res.Status, res.String())
	})
	t.Run("an empty file is refused", func(t *testing.T) {
		res, err := up.Post(b.ctx, b.hc, strings.NewReader(""), 0, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, res.Status, res.String())
		require.Equal(t, "EntityTooSmall", res.Code)
	})
	t.Run("an expired policy is refused", func(t *testing.T) {
		short, err := b.svc.PresignUpload(b.ctx, userA, storage.UploadRequest{PhotoID: newID(), ContentType: "image/png", Expires: time.Second})
		require.NoError(t, err)
		time.Sleep(time.Until(short.Expires) + 1100*time.Millisecond)
		res, err := short.Post(b.ctx, b.hc, strings.NewReader("x"), 1, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, res.Status, res.String())
		require.Equal(t, "AccessDenied", res.Code)
		require.Contains(t, res.Message, "expired")
		require.False(t, b.exists(t, short.Key))
	})
}

// The default limit, 50 MiB, streamed: one byte more is refused.
func TestPresignedUploadDefaultSizeLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, storage.Options{})
	user, photo := newID(), newID()
	up, err := b.svc.PresignUpload(b.ctx, user, storage.UploadRequest{PhotoID: photo, ContentType: "image/webp"})
	require.NoError(t, err)
	require.Equal(t, int64(50<<20), up.MaxBytes)
	res, err := up.Post(b.ctx, b.hc, &patternReader{n: 50<<20 + 1}, 50<<20+1, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, res.Status, res.String())
	require.Equal(t, "EntityTooLarge", res.Code)
	require.False(t, b.exists(t, up.Key))
}

// With ["starts-with", "$key", "users/{user}/raw/{photo}/"] the client picks
// the file name: another user's prefix is still refused, but versitygw's posix
// backend maps keys to file paths and resolves "..", so a key that starts with
// the allowed prefix can land in another user's prefix. (AWS S3 stores keys
// literally; the object would stay under user A, with a confusing name.) This
// is why PresignUpload pins the exact key unless PrefixCondition is asked for.
func TestPresignedPrefixPolicyEscapesOnNormalisingServer(t *testing.T) {
	t.Parallel()
	b := setup(t, storage.Options{})
	userA, userB, photo := newID(), newID(), newID()
	up, err := b.svc.PresignUpload(b.ctx, userA, storage.UploadRequest{PhotoID: photo, ContentType: "image/jpeg", PrefixCondition: true})
	require.NoError(t, err)

	other := keylayout.OriginalPrefix(userA, photo) + "IMG_0001.jpg"
	res, err := up.Post(b.ctx, b.hc, strings.NewReader("x"), 1, map[string]string{"key": other})
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.Status, "any name under the photo's prefix: %s", res)

	keyB := keylayout.OriginalKey(userB, photo, "jpg")
	res, err = up.Post(b.ctx, b.hc, strings.NewReader("x"), 1, map[string]string{"key": keyB})
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, res.Status, res.String())

	escape := keylayout.OriginalPrefix(userA, photo) + "../../../" + userB + "/raw/" + photo + "/original.jpg"
	res, err = up.Post(b.ctx, b.hc, strings.NewReader("escaped"), 7, map[string]string{"key": escape})
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.Status, "versitygw v1.8.0 accepts the key (it starts with the prefix)")
	require.True(t, b.exists(t, keyB), "and stores it under user B: the reason prefix policies are opt-in")
	// The service itself never accepts that key.
	_, err = b.svc.GetKey(b.ctx, userA, escape)
	require.ErrorIs(t, err, storage.ErrForbidden)
}

func TestPresignedDownloadReadsOwnKeyOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, storage.Options{})
	userA, userB, photo := newID(), newID(), newID()
	key, err := b.svc.Put(b.ctx, userA, storage.Thumbnail(photo), bytes.NewReader([]byte("thumb")), 5, "")
	require.NoError(t, err)
	dl, err := b.svc.PresignDownload(b.ctx, userA, key, time.Minute)
	require.NoError(t, err)
	resp, err := b.hc.Get(dl.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "thumb", string(data))

	_, err = b.svc.PresignDownload(b.ctx, userB, key, time.Minute)
	require.ErrorIs(t, err, storage.ErrForbidden)
}
