package keylayout

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

const (
	user  = "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	photo = "0b7e2d61-9c4f-4a3e-b2d1-5e6f7a8b9c0d"
	job   = "job-8812"
)

func TestParseLegacyAndBuild(t *testing.T) {
	t.Parallel()
	cases := []struct {
		legacy string
		kind   Kind
		want   string
	}{
		{"uploaded/job-8812.jpg", KindOriginal, "users/" + user + "/raw/" + photo + "/original.jpg"},
		{"uploaded/job-8812.HEIC", KindOriginal, "users/" + user + "/raw/" + photo + "/original.HEIC"},
		{"restored/job-8812/r-77.png", KindRestored, "users/" + user + "/processed/" + photo + "/restored.png"},
		{"thumbnails/job-8812.jpg", KindThumbnail, "users/" + user + "/thumbs/" + photo + ".jpg"},
		{"animated/job-8812/a1b2_loop.mp4", KindAnimation, "users/" + user + "/animated/" + photo + "/a1b2_loop.mp4"},
		{"animated/job-8812/a1b2_slow_720p.mp4", KindAnimation, "users/" + user + "/animated/" + photo + "/a1b2_slow_720p.mp4"},
		{"meta/job-8812.json", KindMetadata, "users/" + user + "/meta/" + photo + ".json"},
	}
	for _, c := range cases {
		l, err := ParseLegacy(c.legacy)
		require.NoError(t, err, c.legacy)
		require.Equal(t, c.kind, l.Kind)
		require.Equal(t, job, l.JobID)
		got, err := l.UserScoped(user, photo)
		require.NoError(t, err)
		require.Equal(t, c.want, got)
		back, err := ParseUserKey(got)
		require.NoError(t, err)
		require.Equal(t, c.kind, back.Kind)
		require.Equal(t, user, back.UserID)
		require.Equal(t, photo, back.PhotoID)
		require.Equal(t, got, back.Key())
	}
}

func TestParseLegacyRefuses(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"",
		"uploaded/",
		"uploaded/.jpg",
		"uploaded/job.tar.gz",  // two dots: ambiguous extension
		"uploaded/a/b.jpg",     // nested
		"uploaded/../etc.jpg",  // traversal
		"uploaded/job%2F1.jpg", // encoded separator
		"uploaded/job 1.jpg",   // space
		"uploaded/jöb.jpg",     // non-ASCII
		"uploaded/job\x00.jpg", // control
		"uploaded/job.jp g",    // bad extension
		"uploaded/job.averyveryverylongext",
		"restored/job.png", // missing restore id
		"restored/job/../r.png",
		"thumbnails/job.png", // thumbnails are always .jpg
		"thumbnails/job/x.jpg",
		"animated/job/noanim.mp4", // missing _suffix
		"animated/job/a_b.mov",
		"animated/job/_loop.mp4",
		"meta/job.xml",
		"users/" + user + "/raw/" + photo + "/original.jpg", // already user-scoped
		"Uploaded/job.jpg",
		"/uploaded/job.jpg",
	} {
		_, err := ParseLegacy(key)
		require.Error(t, err, "%q", key)
		require.True(t, errors.Is(err, ErrUnrecognisedKey), "%q: %v", key, err)
	}
}

func TestValidateID(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{user, strings.ToUpper(user), "1", "42", "999999999999999999"} {
		require.NoError(t, ValidateID(ok), ok)
	}
	for _, bad := range []string{
		"", "0", "-1", "007", "1.5", "1e9", "9999999999999999999", user + "/", "../" + user,
		user[:35], user + "0", "6f1c2b9e3d4a4c5b8e7f0a1b2c3d4e5f", "abc", "a/b", "..", ".",
		"6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5\u0433", // Cyrillic look-alike
		"１２３", // full-width digits
		"12\n", " 12",
	} {
		err := ValidateID(bad)
		require.Error(t, err, "%q", bad)
		require.True(t, errors.Is(err, ErrInvalidID))
	}
}

func TestUserScopedRefusesBadIDs(t *testing.T) {
	t.Parallel()
	l, err := ParseLegacy("uploaded/job.jpg")
	require.NoError(t, err)
	for _, pair := range [][2]string{{"", photo}, {user, ""}, {"..", photo}, {user, "../x"}, {"a/b", photo}, {user + "/..", photo}} {
		_, err := l.UserScoped(pair[0], pair[1])
		require.Error(t, err, "%q", pair)
		require.True(t, errors.Is(err, ErrInvalidID), "%v", err)
	}
}

func TestCheckUserKey(t *testing.T) {
	t.Parallel()
	other := "1f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	require.NoError(t, CheckUserKey("users/"+user+"/raw/"+photo+"/original.jpg", user))
	for _, bad := range []string{
		"users/" + other + "/raw/x.jpg",
		"users/" + user,
		"users/" + user + "/",
		"users/" + user + "//x",
		"users/" + user + "/../" + other + "/x",
		"users/" + user + "/./x",
		"users/" + user + "/a%2F..%2Fb",
		"users/" + user + "/a\\..\\b",
		"users/" + user + "/a\x7fb",
		"users/" + user + "/a\u0085b",
		"users/" + user + "/" + strings.Repeat("a", 1024),
		"/users/" + user + "/x",
		"users/" + user + "x/y",
	} {
		err := CheckUserKey(bad, user)
		require.Error(t, err, "%q", bad)
		require.True(t, errors.Is(err, ErrUnsafeKey))
	}
}

// assertSafe is what no built key may ever violate.
func assertSafe(t *testing.T, key, userID string) {
	t.Helper()
	if !strings.HasPrefix(key, "users/"+userID+"/") {
		t.Fatalf("key %q outside users/%s/", key, userID)
	}
	if strings.Contains(key, "..") || strings.Contains(key, "//") || strings.HasPrefix(key, "/") {
		t.Fatalf("key %q has .., // or a leading /", key)
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			t.Fatalf("key %q has a control character", key)
		}
	}
	if err := ValidateID(userID); err != nil {
		t.Fatalf("key built for invalid user %q", userID)
	}
}

func FuzzUserScoped(f *testing.F) {
	f.Add("uploaded/job-1.jpg", user, photo)
	f.Add("restored/j/r.png", "12", "34")
	f.Add("animated/j/a_b_c.mp4", user, "7")
	f.Add("meta/j.json", "../x", photo)
	f.Add("thumbnails/j.jpg", user+"/..", photo)
	f.Add("uploaded/..%2F.jpg", "1", "1")
	f.Fuzz(func(t *testing.T, legacy, userID, photoID string) {
		l, err := ParseLegacy(legacy)
		if err != nil {
			return
		}
		if l.JobID == "" || strings.ContainsAny(l.JobID, "/.%\\") {
			t.Fatalf("parsed job id %q from %q", l.JobID, legacy)
		}
		key, err := l.UserScoped(userID, photoID)
		if err != nil {
			return
		}
		assertSafe(t, key, userID)
		back, err := ParseUserKey(key)
		if err != nil {
			t.Fatalf("built key %q does not parse back: %v", key, err)
		}
		if back.UserID != userID || back.PhotoID != photoID || back.Kind != l.Kind || back.Key() != key {
			t.Fatalf("round trip of %q gave %+v", key, back)
		}
	})
}

func FuzzParseUserKey(f *testing.F) {
	f.Add("users/" + user + "/raw/" + photo + "/original.jpg")
	f.Add("users/1/animated/2/a_b.mp4")
	f.Add("users/1/../2/meta/3.json")
	f.Fuzz(func(t *testing.T, key string) {
		u, err := ParseUserKey(key)
		if err != nil {
			return
		}
		assertSafe(t, key, u.UserID)
		if u.Key() != key {
			t.Fatalf("ParseUserKey(%q).Key() = %q", key, u.Key())
		}
	})
}
