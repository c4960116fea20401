package keylayout

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBuildEveryKind(t *testing.T) {
	t.Parallel()
	cases := []struct {
		u    UserKey
		want string
	}{
		{UserKey{Kind: KindOriginal, UserID: user, PhotoID: photo, Ext: "jpg"}, "users/" + user + "/raw/" + photo + "/original.jpg"},
		{UserKey{Kind: KindRestored, UserID: user, PhotoID: photo, Ext: "png"}, "users/" + user + "/processed/" + photo + "/restored.png"},
		{UserKey{Kind: KindThumbnail, UserID: "12", PhotoID: "34"}, "users/12/thumbs/34.jpg"},
		{UserKey{Kind: KindAnimation, UserID: user, PhotoID: photo, AnimationID: "a1", Suffix: "slow_720p"}, "users/" + user + "/animated/" + photo + "/a1_slow_720p.mp4"},
		{UserKey{Kind: KindMetadata, UserID: user, PhotoID: "7"}, "users/" + user + "/meta/7.json"},
	}
	for _, c := range cases {
		got, err := c.u.Build()
		require.NoError(t, err, "%+v", c.u)
		require.Equal(t, c.want, got)
		require.Equal(t, c.u.Key(), got, "Build and Key agree")
	}
}

func TestBuildRefuses(t *testing.T) {
	t.Parallel()
	for _, u := range []UserKey{
		{},
		{Kind: "video", UserID: user, PhotoID: photo},
		{Kind: KindOriginal, UserID: "", PhotoID: photo, Ext: "jpg"},
		{Kind: KindOriginal, UserID: user, PhotoID: "", Ext: "jpg"},
		{Kind: KindOriginal, UserID: user, PhotoID: photo, Ext: ""},
		{Kind: KindOriginal, UserID: user, PhotoID: "../" + photo, Ext: "jpg"},
		{Kind: KindOriginal, UserID: user + "/raw/" + photo, PhotoID: photo, Ext: "jpg"},
		{Kind: KindOriginal, UserID: "..", PhotoID: photo, Ext: "jpg"},
		{Kind: KindOriginal, UserID: user, PhotoID: photo, Ext: "jpg/x"},
		{Kind: KindOriginal, UserID: user, PhotoID: photo, Ext: "tar.gz"},
		{Kind: KindOriginal, UserID: user, PhotoID: photo, Ext: "jp%2Fg"},
		{Kind: KindOriginal, UserID: "１２", PhotoID: photo, Ext: "jpg"}, // full-width digits
		{Kind: KindRestored, UserID: user, PhotoID: photo, Ext: "png", AnimationID: "a"},
		{Kind: KindThumbnail, UserID: user, PhotoID: photo, Ext: "png"},                      // thumbnails are always .jpg
		{Kind: KindMetadata, UserID: user, PhotoID: photo, Suffix: "x"},                      // field that does not belong
		{Kind: KindAnimation, UserID: user, PhotoID: photo, AnimationID: "a_b", Suffix: "c"}, // reads back as a / b_c
		{Kind: KindAnimation, UserID: user, PhotoID: photo, AnimationID: "a", Suffix: "../x"},
		{Kind: KindAnimation, UserID: user, PhotoID: photo, AnimationID: "", Suffix: "loop"},
		{Kind: KindAnimation, UserID: user, PhotoID: photo, AnimationID: "a", Suffix: strings.Repeat("s", 65)},
	} {
		key, err := u.Build()
		require.Error(t, err, "%+v built %q", u, key)
		require.True(t, errors.Is(err, ErrUnsafeKey), "%v", err)
		require.Empty(t, key)
	}
}

func TestPrefixesContainTheirKeys(t *testing.T) {
	t.Parallel()
	require.True(t, strings.HasPrefix(OriginalKey(user, photo, "jpg"), OriginalPrefix(user, photo)))
	require.True(t, strings.HasPrefix(OriginalPrefix(user, photo), OriginalsPrefix(user)))
	require.True(t, strings.HasPrefix(OriginalsPrefix(user), UserPrefix(user)))
	require.True(t, strings.HasPrefix(RestoredKey(user, photo, "png"), RestoredPrefix(user, photo)))
	require.True(t, strings.HasPrefix(AnimationKey(user, photo, "a", "b"), AnimationPrefix(user, photo)))
	// A photo's prefix never contains another photo's keys ("1/" is not a prefix of "12/").
	require.False(t, strings.HasPrefix(OriginalKey(user, "12", "jpg"), OriginalPrefix(user, "1")))
}

func TestLegacyAnimationKeyParsesBack(t *testing.T) {
	t.Parallel()
	key := LegacyAnimationKey(job, "a1b2", "slow_720p")
	require.Equal(t, "animated/job-8812/a1b2_slow_720p.mp4", key)
	l, err := ParseLegacy(key)
	require.NoError(t, err)
	require.Equal(t, Legacy{Kind: KindAnimation, Key: key, JobID: job, AnimationID: "a1b2", Suffix: "slow_720p"}, l)
	_, err = ParseLegacy(LegacyAnimationKey(job, "../a", "b"))
	require.Error(t, err)
}

// FuzzBuild: whatever the fields, Build either refuses or returns a safe key
// that reads back as exactly those fields.
func FuzzBuild(f *testing.F) {
	f.Add(string(KindOriginal), user, photo, "jpg", "", "")
	f.Add(string(KindAnimation), "1", "2", "", "a", "b_c")
	f.Add(string(KindThumbnail), "1/..", "2", "", "", "")
	f.Add(string(KindRestored), "1", "2", "png/../x", "", "")
	f.Fuzz(func(t *testing.T, kind, userID, photoID, ext, animationID, suffix string) {
		u := UserKey{Kind: Kind(kind), UserID: userID, PhotoID: photoID, Ext: ext, AnimationID: animationID, Suffix: suffix}
		key, err := u.Build()
		if err != nil {
			if !errors.Is(err, ErrUnsafeKey) {
				t.Fatalf("Build(%+v) error does not wrap ErrUnsafeKey: %v", u, err)
			}
			return
		}
		assertSafe(t, key, userID)
		back, err := ParseUserKey(key)
		if err != nil || back != u {
			t.Fatalf("Build(%+v) = %q, which reads back as %+v, %v", u, key, back, err)
		}
	})
}

// PhotoObjects must cover every kind's key of the photo, and nothing of another
// photo: DeletePhoto relies on both.
func TestPhotoObjectsCoverEveryKind(t *testing.T) {
	t.Parallel()
	covered := func(key, userID, photoID string) bool {
		prefixes, keys := PhotoObjects(userID, photoID)
		for _, p := range prefixes {
			if strings.HasPrefix(key, p) {
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
	for _, kind := range Kinds {
		u := UserKey{Kind: kind, UserID: user, PhotoID: "12", Ext: "jpg", AnimationID: "a", Suffix: "loop"}
		if kind != KindOriginal && kind != KindRestored {
			u.Ext = ""
		}
		if kind != KindAnimation {
			u.AnimationID, u.Suffix = "", ""
		}
		key, err := u.Build()
		require.NoError(t, err, kind)
		require.True(t, covered(key, user, "12"), "%s key %q not covered", kind, key)
		require.False(t, covered(key, user, "1"), "%s key %q of photo 12 covered by photo 1", kind, key)
		require.False(t, covered(key, "9", "12"), "%s key %q covered by another user", kind, key)
	}
}
