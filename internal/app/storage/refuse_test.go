package storage

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

const (
	userA  = "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	userB  = "1f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	photoP = "0b7e2d61-9c4f-4a3e-b2d1-5e6f7a8b9c0d"
)

// pureBundle is a Service whose S3 endpoint counts requests: a refusal must be
// decided before anything is sent.
type pureBundle struct {
	svc      *Service
	requests *atomic.Int64
}

func pureSetup(t testing.TB) pureBundle {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`<Error><Code>NoSuchKey</Code><Message>none</Message></Error>`))
	}))
	t.Cleanup(srv.Close)
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}, nil
		}),
		HTTPClient: srv.Client(),
	})
	svc, err := New(client, "photos", Options{})
	require.NoError(t, err)
	return pureBundle{svc: svc, requests: &n}
}

func owned(id string) *string { return &id }

// crafted user ids: none is a valid acting user.
var craftedUserIDs = []string{
	"", ".", "..", "/", "a/b", "1/..", "1/../2", userA + "/", "/" + userA, "../" + userA, userA + "/..",
	"%2e%2e", "1%2F2", "1%2f..%2f2", "1\\2", "users", "0", "-1", "007", "1.5", " 1", "1 ", "1\n", "1\x00",
	strings.Repeat("1", 19),                     // overlong integer
	strings.Repeat("a", 2000),                   // overlong anything
	"１２３",                                       // full-width digits
	"6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5\u0433", // Cyrillic look-alike in a UUID
	"6f1c2b9e\u20103d4a-4c5b-8e7f-0a1b2c3d4e5f", // Unicode hyphen
	"1\u2215..",                                 // division slash
	"1\uff0f2",                                  // full-width solidus
}

// crafted photo ids (and other name parts): none may build a key.
var craftedPhotoIDs = []string{
	"", ".", "..", "../" + userB, "1/..", "1/../../" + userB, "1%2F2", "%2e%2e", "1\\2", "1\x00", "12 ", "0",
	strings.Repeat("9", 19), strings.Repeat("p", 2000), "１", "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5\u0433", "1\u2215..",
}

// crafted keys, as user A would submit them, and why each is refused.
func craftedKeys() []struct {
	key    string
	reason Reason
} {
	a := "users/" + userA + "/"
	b := "users/" + userB + "/"
	return []struct {
		key    string
		reason Reason
	}{
		{b + "raw/" + photoP + "/original.jpg", ReasonOtherUser},
		{b + "thumbs/" + photoP + ".jpg", ReasonOtherUser},
		{b + "anything", ReasonOtherUser},
		{"users/" + strings.ToUpper(userA) + "/raw/1/original.jpg", ReasonOtherUser}, // a different id as far as S3 is concerned
		{"uploaded/job-1.jpg", ReasonOutsidePrefix},
		{"meta/job-1.json", ReasonOutsidePrefix},
		{"", ReasonOutsidePrefix},
		{"/" + a + "raw/1/original.jpg", ReasonOutsidePrefix},
		{"USERS/" + userA + "/raw/1/original.jpg", ReasonOutsidePrefix},
		{"users\\" + userA + "\\raw\\1\\original.jpg", ReasonOutsidePrefix},
		{"users/" + userA, ReasonUnsafeKey},
		{a, ReasonUnsafeKey},
		{a + "raw/1/../../../" + userB + "/raw/1/original.jpg", ReasonUnsafeKey},
		{a + "../" + userB + "/raw/1/original.jpg", ReasonUnsafeKey},
		{a + "./raw/1/original.jpg", ReasonUnsafeKey},
		{a + "/raw/1/original.jpg", ReasonUnsafeKey},
		{a + "raw//1/original.jpg", ReasonUnsafeKey},
		{a + "raw/1/original.jpg/", ReasonUnsafeKey},
		{a + "raw/1%2F..%2F..%2F" + userB + "/original.jpg", ReasonUnsafeKey},
		{a + "raw/1/original.jpg%00", ReasonUnsafeKey},
		{a + "raw/1/original.jpg\x00", ReasonUnsafeKey},
		{a + "raw/1/original.jpg\n", ReasonUnsafeKey},
		{a + "raw/1\\..\\..\\" + userB + "/original.jpg", ReasonUnsafeKey},
		{a + "raw/1\u2215..\u2215..\u2215" + userB + "/original.jpg", ReasonUnsafeKey}, // division slash
		{a + "raw/1\uff0f..\uff0f" + userB + "/original.jpg", ReasonUnsafeKey},         // full-width solidus
		{a + "raw/1/\u043eriginal.jpg", ReasonUnsafeKey},                               // Cyrillic o
		{a + "raw/\uff11/original.jpg", ReasonUnsafeKey},                               // full-width 1
		{a + "raw/1/original." + strings.Repeat("j", 2000), ReasonUnsafeKey},
		{a + "raw/1/original.tar.gz", ReasonUnsafeKey},
		{a + "raw/1/other.jpg", ReasonUnsafeKey},
		{a + "notes.txt", ReasonUnsafeKey},
		{a + "raw/1/original.jpg?x-id=PutObject", ReasonUnsafeKey},
		{"users/" + userA + "x/raw/1/original.jpg", ReasonUnsafeKey},
	}
}

// requireRefused checks err is the typed refusal a caller can act on.
func requireRefused(t *testing.T, err error, op string, reason Reason, msg ...any) {
	t.Helper()
	require.Error(t, err, msg...)
	require.ErrorIs(t, err, ErrForbidden, msg...)
	var ae *AccessError
	require.ErrorAs(t, err, &ae, msg...)
	require.Equal(t, op, ae.Op, msg...)
	require.Equal(t, reason, ae.Reason, msg...)
	require.Contains(t, err.Error(), string(reason), msg...)
}

// keyOps are the operations that take a key from outside.
func keyOps(s *Service) map[string]func(ctx context.Context, user, key string) error {
	return map[string]func(ctx context.Context, user, key string) error{
		"get":    func(ctx context.Context, u, k string) error { _, err := s.GetKey(ctx, u, k); return err },
		"head":   func(ctx context.Context, u, k string) error { _, err := s.Head(ctx, u, k); return err },
		"delete": func(ctx context.Context, u, k string) error { return s.DeleteKey(ctx, u, k) },
		"put": func(ctx context.Context, u, k string) error {
			return s.PutKey(ctx, u, k, bytes.NewReader([]byte("x")), 1, "image/jpeg")
		},
		"presign download": func(ctx context.Context, u, k string) error {
			_, err := s.PresignDownload(ctx, u, k, 0)
			return err
		},
	}
}

// refOps are the operations that take a photo (and name parts) for the acting user.
func refOps(s *Service) map[string]func(ctx context.Context, user string, r Ref) error {
	return map[string]func(ctx context.Context, user string, r Ref) error{
		"put": func(ctx context.Context, u string, r Ref) error {
			_, err := s.Put(ctx, u, r, bytes.NewReader([]byte("x")), 1, "")
			return err
		},
		"get":    func(ctx context.Context, u string, r Ref) error { _, err := s.Get(ctx, u, r); return err },
		"delete": func(ctx context.Context, u string, r Ref) error { return s.Delete(ctx, u, r) },
		"key":    func(_ context.Context, u string, r Ref) error { _, err := s.Key(u, r); return err },
		"delete photo": func(ctx context.Context, u string, r Ref) error {
			_, err := s.DeletePhoto(ctx, u, r.PhotoID)
			return err
		},
		"presign upload": func(ctx context.Context, u string, r Ref) error {
			_, err := s.PresignUpload(ctx, u, UploadRequest{PhotoID: r.PhotoID, ContentType: "image/jpeg", Ext: r.Ext})
			return err
		},
		"resolve": func(ctx context.Context, u string, r Ref) error {
			_, err := s.Resolve(ctx, u, PhotoRow{ID: r.PhotoID, OwnerID: &u, OriginalKey: "uploaded/job-1.jpg"}, keylayout.KindOriginal)
			return err
		},
	}
}

func TestCrossUserAttemptsAreRefused(t *testing.T) {
	t.Parallel()
	b := pureSetup(t)
	ctx := context.Background()
	bKey := keylayout.OriginalKey(userB, photoP, "jpg")
	for op, fn := range keyOps(b.svc) {
		requireRefused(t, fn(ctx, userA, bKey), op, ReasonOtherUser, op)
	}

	// Listing: a cursor into B's prefix.
	_, err := b.svc.ListPhotos(ctx, userA, bKey, 10)
	requireRefused(t, err, "list", ReasonOtherUser)

	// Resolving B's row, an ownerless row, or A's row pointing into B's prefix.
	_, err = b.svc.Resolve(ctx, userA, PhotoRow{ID: photoP, OwnerID: owned(userB), OriginalKey: bKey}, keylayout.KindOriginal)
	requireRefused(t, err, "resolve", ReasonNotOwner)
	_, err = b.svc.Resolve(ctx, userA, PhotoRow{ID: photoP, OriginalKey: "uploaded/job-1.jpg"}, keylayout.KindOriginal)
	requireRefused(t, err, "resolve", ReasonNotOwner)
	_, err = b.svc.ResolveAnimation(ctx, userA, PhotoRow{ID: photoP, OwnerID: owned(userB), OriginalKey: bKey}, "a", "loop")
	requireRefused(t, err, "resolve", ReasonNotOwner)
	for _, kind := range []keylayout.Kind{keylayout.KindOriginal, keylayout.KindMetadata} {
		_, err = b.svc.Resolve(ctx, userA, PhotoRow{ID: photoP, OwnerID: owned(userA), OriginalKey: bKey}, kind)
		requireRefused(t, err, "resolve", ReasonOtherUser, kind)
	}
	thumbB := keylayout.ThumbnailKey(userB, photoP)
	_, err = b.svc.Resolve(ctx, userA, PhotoRow{ID: photoP, OwnerID: owned(userA), OriginalKey: "uploaded/job-1.jpg", ThumbnailKey: &thumbB}, keylayout.KindThumbnail)
	requireRefused(t, err, "resolve", ReasonOtherUser)

	// Reading something resolved for B, or a Resolved made up by the caller.
	_, err = b.svc.GetResolved(ctx, userA, Resolved{Key: "uploaded/job-1.jpg", Legacy: true, userID: userB})
	requireRefused(t, err, "get", ReasonNotOwner)
	_, err = b.svc.GetResolved(ctx, userA, Resolved{Key: "uploaded/job-1.jpg", Legacy: true})
	requireRefused(t, err, "get", ReasonNotOwner)

	require.Zero(t, b.requests.Load(), "a refused request reached S3")
}

func TestCraftedUserIDsAreRefused(t *testing.T) {
	t.Parallel()
	b := pureSetup(t)
	ctx := context.Background()
	for _, user := range craftedUserIDs {
		for op, fn := range keyOps(b.svc) {
			// Even with a key built for that very "user".
			requireRefused(t, fn(ctx, user, "users/"+user+"/raw/1/original.jpg"), op, ReasonInvalidUser, "%s %q", op, user)
		}
		for op, fn := range refOps(b.svc) {
			requireRefused(t, fn(ctx, user, Original("1", "jpg")), op, ReasonInvalidUser, "%s %q", op, user)
		}
		_, err := b.svc.ListPhotos(ctx, user, "", 0)
		requireRefused(t, err, "list", ReasonInvalidUser, "%q", user)
	}
	require.Zero(t, b.requests.Load(), "a refused request reached S3")
}

func TestCraftedKeysAreRefused(t *testing.T) {
	t.Parallel()
	b := pureSetup(t)
	ctx := context.Background()
	for _, c := range craftedKeys() {
		for op, fn := range keyOps(b.svc) {
			requireRefused(t, fn(ctx, userA, c.key), op, c.reason, "%s %q", op, c.key)
		}
	}
	require.Zero(t, b.requests.Load(), "a refused request reached S3")
}

func TestCraftedNamesAreRefused(t *testing.T) {
	t.Parallel()
	b := pureSetup(t)
	ctx := context.Background()
	for _, p := range craftedPhotoIDs {
		for op, fn := range refOps(b.svc) {
			requireRefused(t, fn(ctx, userA, Original(p, "jpg")), op, ReasonInvalidObject, "%s %q", op, p)
		}
	}
	for _, r := range []Ref{
		Original("1", ""), Original("1", "jp/g"), Original("1", "../x"), Original("1", "tar.gz"), Original("1", "jp%67"),
		Restored("1", "png/.."), Thumbnail("1/.."), Metadata(".."),
		Animation("1", "", "loop"), Animation("1", "a/..", "loop"), Animation("1", "a", "../../x"), Animation("1", "a_b", "c"),
		{Kind: "secret", PhotoID: "1"}, {Kind: keylayout.KindThumbnail, PhotoID: "1", Ext: "png"},
	} {
		for _, op := range []string{"put", "get", "delete", "key"} {
			requireRefused(t, refOps(b.svc)[op](ctx, userA, r), op, ReasonInvalidObject, "%s %+v", op, r)
		}
	}
	for _, a := range [][2]string{{"a/..", "loop"}, {"a", "../x"}, {"", "x"}, {"a", "b%2F"}} {
		_, err := b.svc.ResolveAnimation(ctx, userA, PhotoRow{ID: "1", OwnerID: owned(userA), OriginalKey: "uploaded/job-1.jpg"}, a[0], a[1])
		requireRefused(t, err, "resolve", ReasonInvalidObject, "%q", a)
	}
	require.Zero(t, b.requests.Load(), "a refused request reached S3")
}

func TestPresignUploadPolicy(t *testing.T) {
	t.Parallel()
	b := pureSetup(t)
	ctx := context.Background()
	up, err := b.svc.PresignUpload(ctx, userA, UploadRequest{PhotoID: photoP, ContentType: "image/png"})
	require.NoError(t, err)
	require.Equal(t, keylayout.OriginalKey(userA, photoP, "png"), up.Key)
	require.Equal(t, up.Key, up.Fields["key"])
	require.Equal(t, "image/png", up.Fields["Content-Type"])
	require.WithinDuration(t, time.Now().Add(DefaultUploadExpiry), up.Expires, 5*time.Second)
	policy := string(up.Policy)
	require.Contains(t, policy, `{"key":"`+up.Key+`"}`)
	require.Contains(t, policy, `["content-length-range",1,52428800]`)
	require.Contains(t, policy, `["eq","$Content-Type","image/png"]`)
	require.NotContains(t, policy, "starts-with")

	up, err = b.svc.PresignUpload(ctx, userA, UploadRequest{PhotoID: photoP, ContentType: "image/jpeg", PrefixCondition: true, MaxBytes: 1024, Expires: time.Minute})
	require.NoError(t, err)
	require.Contains(t, string(up.Policy), `["starts-with","$key","users/`+userA+`/raw/`+photoP+`/"]`)
	require.Contains(t, string(up.Policy), `["content-length-range",1,1024]`)
	require.NotContains(t, string(up.Policy), `{"key":`, "the SDK must not add an exact key condition")
	require.WithinDuration(t, time.Now().Add(time.Minute), up.Expires, 5*time.Second)

	for _, in := range []UploadRequest{
		{PhotoID: photoP, ContentType: "text/html"},
		{PhotoID: photoP, ContentType: "image/svg+xml"},
		{PhotoID: photoP, ContentType: ""},
		{PhotoID: photoP, ContentType: "image/jpeg, text/html"},
		{PhotoID: photoP, ContentType: "image/jpeg", Expires: 2 * time.Hour},
		{PhotoID: photoP, ContentType: "image/jpeg", Expires: time.Millisecond},
		{PhotoID: photoP, ContentType: "image/jpeg", MaxBytes: 51 << 20},
	} {
		_, err := b.svc.PresignUpload(ctx, userA, in)
		require.ErrorIs(t, err, ErrInvalidRequest, "%+v", in)
	}
	_, err = b.svc.PresignDownload(ctx, userA, keylayout.OriginalKey(userA, photoP, "jpg"), 2*time.Hour)
	require.ErrorIs(t, err, ErrInvalidRequest)
	require.Zero(t, b.requests.Load(), "presigning sends nothing")
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	client := s3.New(s3.Options{Region: "us-east-1"})
	for _, o := range []Options{
		{UploadMinBytes: 10, UploadMaxBytes: 5},
		{UploadMaxBytes: 6 << 30},
		{UploadExpiry: 2 * time.Hour},
		{DownloadExpiry: time.Millisecond},
		{UploadContentTypes: []string{"text/html"}},
		{UploadContentTypes: []string{"image/jpeg,text/html"}},
	} {
		_, err := New(client, "b", o)
		require.Error(t, err, "%+v", o)
	}
	_, err := New(client, "", Options{})
	require.Error(t, err)
}

// assertInsidePrefix is what no key the service accepts or builds may violate.
func assertInsidePrefix(t *testing.T, key, userID string) {
	t.Helper()
	if !strings.HasPrefix(key, "users/"+userID+"/") {
		t.Fatalf("accepted key %q outside users/%s/", key, userID)
	}
	for _, bad := range []string{"..", "//", "%", "\\", "/./"} {
		if strings.Contains(key, bad) {
			t.Fatalf("accepted key %q contains %q", key, bad)
		}
	}
	for _, r := range key {
		if r > unicode.MaxASCII || unicode.IsControl(r) {
			t.Fatalf("accepted key %q contains %U", key, r)
		}
	}
	if err := keylayout.ValidateID(userID); err != nil {
		t.Fatalf("accepted user %q: %v", userID, err)
	}
}

// FuzzRefusals: whatever user id, key, photo id and extension are given,
// either the service refuses with ErrForbidden before sending anything, or
// everything it touches is a safe key inside that user's prefix.
func FuzzRefusals(f *testing.F) {
	f.Add(userA, "users/"+userA+"/raw/"+photoP+"/original.jpg", photoP, "jpg")
	f.Add(userA, "users/"+userB+"/raw/1/original.jpg", "1", "png")
	f.Add("1", "users/1/raw/1/../../2/raw/1/original.jpg", "1/../2", "jpg")
	f.Add("1/..", "users/1/raw/1%2F..%2F2/original.jpg", "..", "j%2Fg")
	f.Add("12", "users/12/thumbs/3.jpg", "3", "")
	f.Add("１", "users/1/raw/1\u2215..\u2215/original.jpg", "1\uff0f", "jpg")
	b := pureSetup(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, userID, key, photoID, ext string) {
		check := func(op, k string, err error, sent bool) {
			if err != nil {
				if !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalidRequest) {
					t.Fatalf("%s: untyped error %v", op, err)
				}
				if errors.Is(err, ErrForbidden) && sent {
					t.Fatalf("%s: refused %q but sent a request", op, k)
				}
				if errors.Is(err, ErrForbidden) {
					return
				}
			}
			assertInsidePrefix(t, k, userID)
		}
		for op, fn := range keyOps(b.svc) {
			before := b.requests.Load()
			err := fn(ctx, userID, key)
			check(op, key, err, b.requests.Load() != before)
		}
		for _, r := range []Ref{Original(photoID, ext), Restored(photoID, ext), Thumbnail(photoID), Metadata(photoID), Animation(photoID, ext, ext)} {
			k, err := b.svc.Key(userID, r)
			check("key", k, err, false)
		}
		before := b.requests.Load()
		up, err := b.svc.PresignUpload(ctx, userID, UploadRequest{PhotoID: photoID, ContentType: "image/jpeg", Ext: ext})
		if err == nil {
			check("presign upload", up.Fields["key"], nil, false)
			if !strings.HasPrefix(up.Key, keylayout.OriginalPrefix(userID, photoID)) {
				t.Fatalf("upload key %q outside the photo's prefix", up.Key)
			}
		} else {
			check("presign upload", "", err, b.requests.Load() != before)
		}
		_, err = b.svc.ListPhotos(ctx, userID, key, 1)
		if errors.Is(err, ErrForbidden) {
			return
		}
		if !strings.HasPrefix(key, keylayout.OriginalsPrefix(userID)) && key != "" {
			t.Fatalf("list accepted cursor %q for user %q", key, userID)
		}
	})
}
