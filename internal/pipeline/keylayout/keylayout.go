// Package keylayout is the single place where the bucket's key layout is written
// down: how legacy (flat) keys are parsed, and how user-scoped keys are built.
//
// Every function is pure. Every key it returns has been checked to live under
// users/{user_id}/ and to contain no empty, "." or ".." segment, no control
// character and no backslash, so a caller can hand it to S3 or to an IAM-confined
// principal without further checks.
package keylayout

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Kind names one of the objects a photo owns.
type Kind string

// The object kinds, as DESIGN.md's key mapping lists them.
const (
	KindOriginal  Kind = "original"
	KindRestored  Kind = "restored"
	KindThumbnail Kind = "thumbnail"
	KindAnimation Kind = "animation"
	KindMetadata  Kind = "metadata"
)

// Kinds lists every kind, in the order a photo's objects are moved.
var Kinds = []Kind{KindOriginal, KindRestored, KindThumbnail, KindMetadata, KindAnimation}

// UserPrefixRoot is the first segment of every user-scoped key.
const UserPrefixRoot = "users/"

// MaxKeyBytes is S3's limit on the length of an object key.
const MaxKeyBytes = 1024

// ErrInvalidID is wrapped by every error about a malformed user or photo id.
var ErrInvalidID = errors.New("invalid id")

// ErrUnrecognisedKey is wrapped by every error about a key that does not follow
// the legacy layout.
var ErrUnrecognisedKey = errors.New("unrecognised legacy key")

// ErrUnsafeKey is wrapped by every error about a built or supplied key that is
// not safely inside a user's prefix.
var ErrUnsafeKey = errors.New("unsafe key")

var (
	uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// A positive decimal integer without leading zeros that fits in an int64.
	intRE = regexp.MustCompile(`^[1-9][0-9]{0,17}$`)
	// Job, restore and animation ids and suffixes: conservative, so that no
	// separator, dot or encoded character can ever reach a built key.
	tokenRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,127}$`)
	suffixRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	extRE       = regexp.MustCompile(`^[A-Za-z0-9]{1,10}$`)
	originalRE  = regexp.MustCompile(`^uploaded/([^/]+)\.([^./]+)$`)
	restoredRE  = regexp.MustCompile(`^restored/([^/]+)/([^/]+)\.([^./]+)$`)
	thumbnailRE = regexp.MustCompile(`^thumbnails/([^/]+)\.jpg$`)
	animationRE = regexp.MustCompile(`^animated/([^/]+)/([^/_]+)_([^/]+)\.mp4$`)
	metadataRE  = regexp.MustCompile(`^meta/([^/]+)\.json$`)
)

// ValidateID checks a user or photo id: a UUID (either case) or a positive
// decimal integer. Anything else, including ids that merely contain a valid one,
// is refused.
func ValidateID(id string) error {
	if uuidRE.MatchString(id) || intRE.MatchString(id) {
		return nil
	}
	return fmt.Errorf("%w %q: want a UUID or a positive decimal integer", ErrInvalidID, id)
}

// Legacy is a parsed legacy key. Which fields are set depends on Kind.
type Legacy struct {
	Kind        Kind
	Key         string // the key as parsed
	JobID       string
	Ext         string // original and restored
	RestoreID   string // restored
	AnimationID string // animation
	Suffix      string // animation
}

// ParseLegacy recognises a key of the flat layout. It returns an error wrapping
// ErrUnrecognisedKey for anything else, including keys whose segments would not
// be safe to carry into a user-scoped key.
func ParseLegacy(key string) (Legacy, error) {
	l := Legacy{Key: key}
	var m []string
	switch {
	case strings.HasPrefix(key, "uploaded/"):
		if m = originalRE.FindStringSubmatch(key); m != nil {
			l.Kind, l.JobID, l.Ext = KindOriginal, m[1], m[2]
		}
	case strings.HasPrefix(key, "restored/"):
		if m = restoredRE.FindStringSubmatch(key); m != nil {
			l.Kind, l.JobID, l.RestoreID, l.Ext = KindRestored, m[1], m[2], m[3]
		}
	case strings.HasPrefix(key, "thumbnails/"):
		if m = thumbnailRE.FindStringSubmatch(key); m != nil {
			l.Kind, l.JobID = KindThumbnail, m[1]
		}
	case strings.HasPrefix(key, "animated/"):
		if m = animationRE.FindStringSubmatch(key); m != nil {
			l.Kind, l.JobID, l.AnimationID, l.Suffix = KindAnimation, m[1], m[2], m[3]
		}
	case strings.HasPrefix(key, "meta/"):
		if m = metadataRE.FindStringSubmatch(key); m != nil {
			l.Kind, l.JobID = KindMetadata, m[1]
		}
	}
	if m == nil {
		return Legacy{}, fmt.Errorf("%w %q: it matches none of uploaded/{job}.{ext}, restored/{job}/{restore}.{ext}, thumbnails/{job}.jpg, animated/{job}/{animation}_{suffix}.mp4, meta/{job}.json", ErrUnrecognisedKey, key)
	}
	if err := l.validate(); err != nil {
		return Legacy{}, fmt.Errorf("%w %q: %v", ErrUnrecognisedKey, key, err)
	}
	return l, nil
}

func (l Legacy) validate() error {
	if !tokenRE.MatchString(l.JobID) {
		return fmt.Errorf("job id %q has characters outside [A-Za-z0-9-]", l.JobID)
	}
	if l.Ext != "" && !extRE.MatchString(l.Ext) {
		return fmt.Errorf("extension %q is not 1-10 letters or digits", l.Ext)
	}
	if l.Kind == KindRestored && !tokenRE.MatchString(l.RestoreID) {
		return fmt.Errorf("restore id %q has characters outside [A-Za-z0-9-]", l.RestoreID)
	}
	if l.Kind == KindAnimation {
		if !tokenRE.MatchString(l.AnimationID) {
			return fmt.Errorf("animation id %q has characters outside [A-Za-z0-9-]", l.AnimationID)
		}
		if !suffixRE.MatchString(l.Suffix) {
			return fmt.Errorf("animation suffix %q has characters outside [A-Za-z0-9_-]", l.Suffix)
		}
	}
	return nil
}

// UserScoped builds the user-scoped key of this legacy object for the photo
// photoID owned by userID. Both ids are validated, and so is the result.
func (l Legacy) UserScoped(userID, photoID string) (string, error) {
	if err := ValidateID(userID); err != nil {
		return "", fmt.Errorf("user: %w", err)
	}
	if err := ValidateID(photoID); err != nil {
		return "", fmt.Errorf("photo: %w", err)
	}
	if err := l.validate(); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnrecognisedKey, err)
	}
	var key string
	switch l.Kind {
	case KindOriginal:
		key = OriginalKey(userID, photoID, l.Ext)
	case KindRestored:
		key = RestoredKey(userID, photoID, l.Ext)
	case KindThumbnail:
		key = ThumbnailKey(userID, photoID)
	case KindAnimation:
		key = AnimationKey(userID, photoID, l.AnimationID, l.Suffix)
	case KindMetadata:
		key = MetadataKey(userID, photoID)
	default:
		return "", fmt.Errorf("%w: kind %q", ErrUnrecognisedKey, l.Kind)
	}
	if err := CheckUserKey(key, userID); err != nil {
		return "", err
	}
	return key, nil
}

// The builders below do not validate: use them only with ids that passed
// ValidateID, or go through Legacy.UserScoped or CheckUserKey.

// UserPrefix is the prefix every key of userID starts with.
func UserPrefix(userID string) string { return UserPrefixRoot + userID + "/" }

// OriginalsPrefix is users/{user}/raw/, under which all of a user's originals
// are stored (one directory per photo): listing it lists the user's photos.
func OriginalsPrefix(userID string) string { return UserPrefix(userID) + "raw/" }

// OriginalPrefix is the prefix under which a photo's original is stored.
func OriginalPrefix(userID, photoID string) string {
	return OriginalsPrefix(userID) + photoID + "/"
}

// OriginalKey is users/{user}/raw/{photo}/original.{ext}.
func OriginalKey(userID, photoID, ext string) string {
	return OriginalPrefix(userID, photoID) + "original." + ext
}

// RestoredPrefix is users/{user}/processed/{photo}/, where a photo's restored
// image is stored.
func RestoredPrefix(userID, photoID string) string {
	return UserPrefix(userID) + "processed/" + photoID + "/"
}

// RestoredKey is users/{user}/processed/{photo}/restored.{ext}.
func RestoredKey(userID, photoID, ext string) string {
	return RestoredPrefix(userID, photoID) + "restored." + ext
}

// ThumbnailKey is users/{user}/thumbs/{photo}.jpg.
func ThumbnailKey(userID, photoID string) string {
	return UserPrefix(userID) + "thumbs/" + photoID + ".jpg"
}

// AnimationPrefix is users/{user}/animated/{photo}/.
func AnimationPrefix(userID, photoID string) string {
	return UserPrefix(userID) + "animated/" + photoID + "/"
}

// AnimationKey is users/{user}/animated/{photo}/{animation}_{suffix}.mp4.
func AnimationKey(userID, photoID, animationID, suffix string) string {
	return AnimationPrefix(userID, photoID) + animationID + "_" + suffix + ".mp4"
}

// MetadataKey is users/{user}/meta/{photo}.json.
func MetadataKey(userID, photoID string) string {
	return UserPrefix(userID) + "meta/" + photoID + ".json"
}

// PhotoObjects says where the objects of one photo live: the prefixes of the
// kinds stored in a directory of their own (original, restored, animations)
// and the keys of the kinds stored as a single object (thumbnail, metadata).
// Listing the prefixes and adding the keys finds everything the photo owns
// under users/{user}/, whatever the extensions; it does not validate.
func PhotoObjects(userID, photoID string) (prefixes, keys []string) {
	return []string{OriginalPrefix(userID, photoID), RestoredPrefix(userID, photoID), AnimationPrefix(userID, photoID)},
		[]string{ThumbnailKey(userID, photoID), MetadataKey(userID, photoID)}
}

// LegacyMetadataKey is meta/{job}.json, the metadata object a legacy photo may have.
func LegacyMetadataKey(jobID string) string { return "meta/" + jobID + ".json" }

// LegacyAnimationPrefix is animated/{job}/, listed to find a photo's animations.
func LegacyAnimationPrefix(jobID string) string { return "animated/" + jobID + "/" }

// LegacyAnimationKey is animated/{job}/{animation}_{suffix}.mp4. It does not
// validate: pass the result to ParseLegacy before trusting it.
func LegacyAnimationKey(jobID, animationID, suffix string) string {
	return LegacyAnimationPrefix(jobID) + animationID + "_" + suffix + ".mp4"
}

// LegacyRestoredPrefix is restored/{job}/, where a job's restores (referenced or
// orphaned) live.
func LegacyRestoredPrefix(jobID string) string { return "restored/" + jobID + "/" }

// IsUserScoped reports whether key is in the user-scoped layout (by prefix only;
// use CheckUserKey to know it is safe).
func IsUserScoped(key string) bool { return strings.HasPrefix(key, UserPrefixRoot) }

// CheckUserKey is the final gate for every key handed to S3 on a user's behalf: it
// must start with users/{userID}/, have no empty, "." or ".." segment, no control
// character, backslash or percent sign (so no encoded separator can be decoded
// later), be valid UTF-8 and fit S3's key length.
func CheckUserKey(key, userID string) error {
	if err := ValidateID(userID); err != nil {
		return fmt.Errorf("%w %q: owner: %v", ErrUnsafeKey, key, err)
	}
	if !strings.HasPrefix(key, UserPrefix(userID)) {
		return fmt.Errorf("%w %q: not under %s", ErrUnsafeKey, key, UserPrefix(userID))
	}
	if err := CheckKeyShape(key); err != nil {
		return err
	}
	return nil
}

// CheckKeyShape refuses keys that could be read differently after normalisation:
// empty, "." and ".." segments (which also covers "//" and a leading or trailing
// "/"), control characters, backslashes, percent signs, invalid UTF-8 and keys
// longer than S3 accepts.
func CheckKeyShape(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrUnsafeKey)
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: key is %d bytes, S3 allows %d", ErrUnsafeKey, len(key), MaxKeyBytes)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w %q: not valid UTF-8", ErrUnsafeKey, key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w %q: control character %U", ErrUnsafeKey, key, r)
		}
		if r == '\\' || r == '%' {
			return fmt.Errorf("%w %q: character %q is not allowed", ErrUnsafeKey, key, r)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w %q: empty, \".\" or \"..\" path segment", ErrUnsafeKey, key)
		}
	}
	return nil
}

// UserKey is a parsed user-scoped key.
type UserKey struct {
	Kind        Kind
	UserID      string
	PhotoID     string
	Ext         string // original and restored
	AnimationID string // animation
	Suffix      string // animation
}

var (
	userOriginalRE  = regexp.MustCompile(`^users/([^/]+)/raw/([^/]+)/original\.([^./]+)$`)
	userRestoredRE  = regexp.MustCompile(`^users/([^/]+)/processed/([^/]+)/restored\.([^./]+)$`)
	userThumbnailRE = regexp.MustCompile(`^users/([^/]+)/thumbs/([^/]+)\.jpg$`)
	userAnimationRE = regexp.MustCompile(`^users/([^/]+)/animated/([^/]+)/([^/_]+)_([^/]+)\.mp4$`)
	userMetadataRE  = regexp.MustCompile(`^users/([^/]+)/meta/([^/]+)\.json$`)
)

// ParseUserKey recognises a key of the user-scoped layout, validating every
// segment. It is the inverse of the builders above.
func ParseUserKey(key string) (UserKey, error) {
	var u UserKey
	if m := userOriginalRE.FindStringSubmatch(key); m != nil {
		u = UserKey{Kind: KindOriginal, UserID: m[1], PhotoID: m[2], Ext: m[3]}
	} else if m := userRestoredRE.FindStringSubmatch(key); m != nil {
		u = UserKey{Kind: KindRestored, UserID: m[1], PhotoID: m[2], Ext: m[3]}
	} else if m := userThumbnailRE.FindStringSubmatch(key); m != nil {
		u = UserKey{Kind: KindThumbnail, UserID: m[1], PhotoID: m[2]}
	} else if m := userAnimationRE.FindStringSubmatch(key); m != nil {
		u = UserKey{Kind: KindAnimation, UserID: m[1], PhotoID: m[2], AnimationID: m[3], Suffix: m[4]}
	} else if m := userMetadataRE.FindStringSubmatch(key); m != nil {
		u = UserKey{Kind: KindMetadata, UserID: m[1], PhotoID: m[2]}
	} else {
		return UserKey{}, fmt.Errorf("%w %q: not a user-scoped photo key", ErrUnsafeKey, key)
	}
	if err := ValidateID(u.UserID); err != nil {
		return UserKey{}, fmt.Errorf("%w %q: user: %v", ErrUnsafeKey, key, err)
	}
	if err := ValidateID(u.PhotoID); err != nil {
		return UserKey{}, fmt.Errorf("%w %q: photo: %v", ErrUnsafeKey, key, err)
	}
	if u.Ext != "" && !extRE.MatchString(u.Ext) {
		return UserKey{}, fmt.Errorf("%w %q: extension", ErrUnsafeKey, key)
	}
	if u.Kind == KindAnimation && (!tokenRE.MatchString(u.AnimationID) || !suffixRE.MatchString(u.Suffix)) {
		return UserKey{}, fmt.Errorf("%w %q: animation id or suffix", ErrUnsafeKey, key)
	}
	return u, CheckUserKey(key, u.UserID)
}

// Build is the validating counterpart of Key: it builds the key u describes and
// returns it only if ParseUserKey reads exactly u back from it, so every id,
// extension, animation id and suffix has been checked and no field was ignored
// (an extension on a thumbnail, say). Errors wrap ErrUnsafeKey.
func (u UserKey) Build() (string, error) {
	key := u.Key()
	if key == "" {
		return "", fmt.Errorf("%w: unknown kind %q", ErrUnsafeKey, u.Kind)
	}
	back, err := ParseUserKey(key)
	if err != nil {
		return "", err
	}
	if back != u {
		return "", fmt.Errorf("%w %q: built from %+v, which reads back as %+v (a field holds a separator, or does not belong to this kind)", ErrUnsafeKey, key, u, back)
	}
	return key, nil
}

// Key builds the key u describes.
func (u UserKey) Key() string {
	switch u.Kind {
	case KindOriginal:
		return OriginalKey(u.UserID, u.PhotoID, u.Ext)
	case KindRestored:
		return RestoredKey(u.UserID, u.PhotoID, u.Ext)
	case KindThumbnail:
		return ThumbnailKey(u.UserID, u.PhotoID)
	case KindAnimation:
		return AnimationKey(u.UserID, u.PhotoID, u.AnimationID, u.Suffix)
	case KindMetadata:
		return MetadataKey(u.UserID, u.PhotoID)
	}
	return ""
}
