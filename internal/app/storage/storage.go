// Package storage is the application's StorageService for Phase 1 of the
// migration plan: every object the application writes or reads on a user's
// behalf goes through it, and it only ever touches that user's prefix,
// users/{user_id}/.
//
// Every operation takes the acting user's id first and validates it (a UUID or
// a positive decimal integer, nothing else). Keys are built only by
// internal/pipeline/keylayout, the same package the migration's worker uses, so the
// layout is written down once. Keys that come from outside (a photos row, a
// client, a cursor) must parse as keys of the layout owned by the acting user;
// anything else is refused with an *AccessError wrapping ErrForbidden before
// any request reaches S3. The one read outside users/ is the dual-write
// resolution of a legacy key recorded in a row the user owns (Resolve).
//
// Uploads from clients go through presigned POST policies (PresignUpload) that
// S3 itself enforces: the key, the size range, an image content type and a
// short expiry.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Options configure a Service. Zero values take the defaults in brackets.
type Options struct {
	// UploadMinBytes and UploadMaxBytes bound the size of a presigned upload,
	// as the policy's content-length-range [1 byte, 50 MiB].
	UploadMinBytes int64
	UploadMaxBytes int64
	// UploadExpiry is how long a presigned upload is valid [5m].
	UploadExpiry time.Duration
	// DownloadExpiry is how long a presigned download URL is valid [5m].
	DownloadExpiry time.Duration
	// MaxExpiry caps the expiry a single request may ask for [1h]. (versitygw
	// also refuses a POST signed more than an hour ago, whatever its policy.)
	MaxExpiry time.Duration
	// UploadContentTypes are the content types a presigned upload may declare
	// [DefaultUploadContentTypes]. Each must start with "image/".
	UploadContentTypes []string
}

// DefaultUploadContentTypes are the image types accepted for uploads by
// default, with the extension an original of that type gets. SVG is left out
// on purpose: it is a document that can carry scripts.
var DefaultUploadContentTypes = map[string]string{
	"image/jpeg": "jpg",
	"image/png":  "png",
	"image/heic": "heic",
	"image/heif": "heif",
	"image/webp": "webp",
	"image/gif":  "gif",
	"image/avif": "avif",
	"image/tiff": "tiff",
}

// The defaults of Options.
const (
	DefaultUploadMinBytes = 1
	DefaultUploadMaxBytes = 50 << 20
	DefaultUploadExpiry   = 5 * time.Minute
	DefaultDownloadExpiry = 5 * time.Minute
	DefaultMaxExpiry      = time.Hour
	// maxPostBytes is S3's limit on a POST upload.
	maxPostBytes = 5 << 30
)

// Service is the StorageService: one bucket, accessed on behalf of one acting
// user per call. It is safe for concurrent use.
type Service struct {
	client       *s3.Client
	presign      *s3.PresignClient
	objects      *objstore.Store
	bucket       string
	opts         Options
	contentTypes map[string]bool
}

// New returns the Service for bucket. client must be configured as for any S3
// call (path style for local servers); presigned requests are signed with its
// credentials, so those credentials need the application role's permissions
// (deploy/iam/app-role.json).
func New(client *s3.Client, bucket string, o Options) (*Service, error) {
	if bucket == "" {
		return nil, errors.New("storage: no bucket")
	}
	if o.UploadMinBytes == 0 {
		o.UploadMinBytes = DefaultUploadMinBytes
	}
	if o.UploadMaxBytes == 0 {
		o.UploadMaxBytes = DefaultUploadMaxBytes
	}
	if o.UploadExpiry == 0 {
		o.UploadExpiry = DefaultUploadExpiry
	}
	if o.DownloadExpiry == 0 {
		o.DownloadExpiry = DefaultDownloadExpiry
	}
	if o.MaxExpiry == 0 {
		o.MaxExpiry = DefaultMaxExpiry
	}
	if o.UploadMinBytes < 0 || o.UploadMaxBytes < o.UploadMinBytes || o.UploadMaxBytes > maxPostBytes {
		return nil, fmt.Errorf("storage: upload size range [%d, %d]: want 0 <= min <= max <= 5 GiB", o.UploadMinBytes, o.UploadMaxBytes)
	}
	for _, d := range []time.Duration{o.UploadExpiry, o.DownloadExpiry} {
		if d < time.Second || d > o.MaxExpiry {
			return nil, fmt.Errorf("storage: expiry %s: want between 1s and the maximum, %s", d, o.MaxExpiry)
		}
	}
	if len(o.UploadContentTypes) == 0 {
		for ct := range DefaultUploadContentTypes {
			o.UploadContentTypes = append(o.UploadContentTypes, ct)
		}
		sort.Strings(o.UploadContentTypes)
	}
	types := map[string]bool{}
	for _, ct := range o.UploadContentTypes {
		if !strings.HasPrefix(ct, "image/") || strings.ContainsAny(ct, ",; \t") {
			return nil, fmt.Errorf("storage: upload content type %q: want a single image/* type", ct)
		}
		types[ct] = true
	}
	return &Service{
		client:       client,
		presign:      s3.NewPresignClient(client),
		objects:      objstore.New(client, bucket, objstore.Options{}),
		bucket:       bucket,
		opts:         o,
		contentTypes: types,
	}, nil
}

// Bucket is the bucket's name.
func (s *Service) Bucket() string { return s.bucket }

// Options are the options in force, defaults filled in.
func (s *Service) Options() Options { return s.opts }

// Ref names one object of a photo, without its owner: the owner is always the
// acting user passed to each call, so a Ref cannot name another user's object.
type Ref struct {
	Kind        keylayout.Kind
	PhotoID     string
	Ext         string // original and restored only
	AnimationID string // animation only
	Suffix      string // animation only
}

// Original refers to a photo's uploaded original, users/{user}/raw/{photo}/original.{ext}.
func Original(photoID, ext string) Ref {
	return Ref{Kind: keylayout.KindOriginal, PhotoID: photoID, Ext: ext}
}

// Restored refers to a photo's restored image, users/{user}/processed/{photo}/restored.{ext}.
func Restored(photoID, ext string) Ref {
	return Ref{Kind: keylayout.KindRestored, PhotoID: photoID, Ext: ext}
}

// Thumbnail refers to a photo's thumbnail, users/{user}/thumbs/{photo}.jpg.
func Thumbnail(photoID string) Ref { return Ref{Kind: keylayout.KindThumbnail, PhotoID: photoID} }

// Animation refers to one of a photo's animations,
// users/{user}/animated/{photo}/{animation}_{suffix}.mp4.
func Animation(photoID, animationID, suffix string) Ref {
	return Ref{Kind: keylayout.KindAnimation, PhotoID: photoID, AnimationID: animationID, Suffix: suffix}
}

// Metadata refers to a photo's metadata, users/{user}/meta/{photo}.json.
func Metadata(photoID string) Ref { return Ref{Kind: keylayout.KindMetadata, PhotoID: photoID} }

// String describes r for error messages.
func (r Ref) String() string {
	s := fmt.Sprintf("%s of photo %s", r.Kind, r.PhotoID)
	if r.Ext != "" {
		s += " ." + r.Ext
	}
	if r.AnimationID != "" || r.Suffix != "" {
		s += fmt.Sprintf(" %s_%s", r.AnimationID, r.Suffix)
	}
	return s
}

// defaultContentType is what Put stores when the caller gives none.
func (r Ref) defaultContentType() string {
	switch r.Kind {
	case keylayout.KindThumbnail:
		return "image/jpeg"
	case keylayout.KindAnimation:
		return "video/mp4"
	case keylayout.KindMetadata:
		return "application/json"
	}
	return "application/octet-stream"
}

// checkUser validates the acting user's id: every operation starts here.
func checkUser(op, userID string) error {
	if err := keylayout.ValidateID(userID); err != nil {
		return refuse(op, userID, "", ReasonInvalidUser, err)
	}
	return nil
}

// checkPhotoID validates a photo id given on its own.
func checkPhotoID(op, userID, photoID string) error {
	if err := keylayout.ValidateID(photoID); err != nil {
		return refuse(op, userID, photoID, ReasonInvalidObject, fmt.Errorf("photo: %w", err))
	}
	return nil
}

// key builds r's key for userID through the layout, refusing anything the
// layout would not read back as exactly r.
func key(op, userID string, r Ref) (string, error) {
	if err := checkUser(op, userID); err != nil {
		return "", err
	}
	k, err := keylayout.UserKey{
		Kind: r.Kind, UserID: userID, PhotoID: r.PhotoID, Ext: r.Ext, AnimationID: r.AnimationID, Suffix: r.Suffix,
	}.Build()
	if err != nil {
		return "", refuse(op, userID, r.String(), ReasonInvalidObject, err)
	}
	return k, nil
}

// checkKey accepts a key from outside (a row, a client) only if it is a key of
// the layout owned by userID. ParseUserKey validates every segment, so a key
// that passes is plain ASCII with no "..", ".", empty segment, "%", "\" or
// control character: nothing a later normalisation could move to another
// prefix.
func checkKey(op, userID, k string) (keylayout.UserKey, error) {
	if err := checkUser(op, userID); err != nil {
		return keylayout.UserKey{}, err
	}
	u, perr := keylayout.ParseUserKey(k)
	if perr == nil && u.UserID == userID {
		return u, nil
	}
	cause := keylayout.CheckUserKey(k, userID)
	if cause == nil {
		cause = perr
	}
	reason := ReasonUnsafeKey
	switch {
	case strings.HasPrefix(k, keylayout.UserPrefix(userID)):
		// Inside the prefix as a string, but not a key of the layout.
	case perr == nil:
		reason = ReasonOtherUser
	case keylayout.IsUserScoped(k):
		seg, _, _ := strings.Cut(strings.TrimPrefix(k, keylayout.UserPrefixRoot), "/")
		if seg != userID && keylayout.ValidateID(seg) == nil {
			reason = ReasonOtherUser
		}
	default:
		reason = ReasonOutsidePrefix
	}
	return keylayout.UserKey{}, refuse(op, userID, k, reason, cause)
}

// Key returns the key r has for userID: the key Put writes and Get reads.
func (s *Service) Key(userID string, r Ref) (string, error) { return key("key", userID, r) }

// Put writes one of the acting user's objects and returns its key. body must
// be seekable so the SDK can sign and checksum it over plain HTTP as well as
// TLS; size is its length. An empty contentType stores the kind's usual type
// (image/jpeg for thumbnails, video/mp4, application/json).
func (s *Service) Put(ctx context.Context, userID string, r Ref, body io.ReadSeeker, size int64, contentType string) (string, error) {
	k, err := key("put", userID, r)
	if err != nil {
		return "", err
	}
	if contentType == "" {
		contentType = r.defaultContentType()
	}
	if err := s.objects.PutStream(ctx, k, body, size, contentType, nil); err != nil {
		return "", err
	}
	return k, nil
}

// PutKey writes key, which must be a key of the layout owned by userID (a key
// the application recorded, say). Prefer Put, which cannot name another
// user's object at all.
func (s *Service) PutKey(ctx context.Context, userID, key string, body io.ReadSeeker, size int64, contentType string) error {
	u, err := checkKey("put", userID, key)
	if err != nil {
		return err
	}
	if contentType == "" {
		contentType = Ref{Kind: u.Kind}.defaultContentType()
	}
	return s.objects.PutStream(ctx, key, body, size, contentType, nil)
}

// Object is an object being read. The caller must close Body.
type Object struct {
	Key          string
	Body         io.ReadCloser
	Size         int64
	ContentType  string
	ETag         string
	LastModified time.Time
}

// Get opens one of the acting user's objects for reading. A missing object is
// an error wrapping ErrNotFound.
func (s *Service) Get(ctx context.Context, userID string, r Ref) (*Object, error) {
	k, err := key("get", userID, r)
	if err != nil {
		return nil, err
	}
	return s.get(ctx, k)
}

// GetKey opens key, which must be a key of the layout owned by userID (for
// instance one read from a photos row), for reading.
func (s *Service) GetKey(ctx context.Context, userID, key string) (*Object, error) {
	if _, err := checkKey("get", userID, key); err != nil {
		return nil, err
	}
	return s.get(ctx, key)
}

func (s *Service) get(ctx context.Context, k string) (*Object, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", s.bucket, k, notFound(err))
	}
	return &Object{
		Key:          k,
		Body:         out.Body,
		Size:         aws.ToInt64(out.ContentLength),
		ContentType:  aws.ToString(out.ContentType),
		ETag:         aws.ToString(out.ETag),
		LastModified: aws.ToTime(out.LastModified),
	}, nil
}

// notFound marks S3's "no such key" answers with ErrNotFound, keeping the SDK
// error in the chain.
func notFound(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound") {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Head reads the attributes of key, which must be a key of the layout owned by
// userID: the application calls it after a presigned upload to confirm the
// object arrived, and its size.
func (s *Service) Head(ctx context.Context, userID, key string) (objstore.Info, error) {
	if _, err := checkKey("head", userID, key); err != nil {
		return objstore.Info{}, err
	}
	return s.objects.Head(ctx, key)
}

// Delete removes one of the acting user's objects (S3 answers success for a
// key that does not exist).
func (s *Service) Delete(ctx context.Context, userID string, r Ref) error {
	k, err := key("delete", userID, r)
	if err != nil {
		return err
	}
	return s.objects.Delete(ctx, k)
}

// DeleteKey removes key, which must be a key of the layout owned by userID.
func (s *Service) DeleteKey(ctx context.Context, userID, key string) error {
	if _, err := checkKey("delete", userID, key); err != nil {
		return err
	}
	return s.objects.Delete(ctx, key)
}

// DeletePhoto removes every object of the acting user's photo under
// users/{user}/ (original, restored image, thumbnail, animations, metadata,
// and anything else a prefix upload left in the photo's directories) and
// returns how many keys it asked S3 to delete. Legacy objects are not touched:
// they belong to the migration's cleanup, and the application role may not
// delete them.
func (s *Service) DeletePhoto(ctx context.Context, userID, photoID string) (int, error) {
	const op = "delete photo"
	if err := checkUser(op, userID); err != nil {
		return 0, err
	}
	if err := checkPhotoID(op, userID, photoID); err != nil {
		return 0, err
	}
	prefixes, keys := keylayout.PhotoObjects(userID, photoID)
	for _, p := range prefixes {
		err := s.objects.ListEach(ctx, p, func(k string, _ int64, _ string) error {
			// S3 only lists keys under the prefix; checked again because this
			// is the one place keys are deleted without being built here.
			if !strings.HasPrefix(k, p) {
				return refuse(op, userID, k, ReasonOutsidePrefix, fmt.Errorf("listing %s returned %s", p, k))
			}
			keys = append(keys, k)
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("delete photo %s of user %s: %w", photoID, userID, err)
		}
	}
	for start := 0; start < len(keys); start += 1000 {
		batch := keys[start:min(start+1000, len(keys))]
		failed, err := s.objects.DeleteBatch(ctx, batch)
		if err != nil {
			return start, fmt.Errorf("delete photo %s of user %s: %w", photoID, userID, err)
		}
		if len(failed) > 0 {
			return start, fmt.Errorf("delete photo %s of user %s: %d objects not deleted: %v", photoID, userID, len(failed), failed)
		}
	}
	return len(keys), nil
}

// ListedPhoto is one photo of a user, as its original.
type ListedPhoto struct {
	PhotoID      string
	Key          string
	Size         int64
	LastModified time.Time
}

// PhotoPage is one page of a user's photos. Next is the cursor of the next
// page, empty on the last one.
type PhotoPage struct {
	Photos []ListedPhoto
	Next   string
}

// ListPhotos lists the acting user's photos (their originals), in key order,
// at most limit objects per page (1 to 1000; 0 means 1000). cursor is the Next
// of the previous page, or empty for the first: it is a key of the user's
// layout, so a cursor into another user's prefix is refused.
func (s *Service) ListPhotos(ctx context.Context, userID, cursor string, limit int) (PhotoPage, error) {
	const op = "list"
	if err := checkUser(op, userID); err != nil {
		return PhotoPage{}, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	prefix := keylayout.OriginalsPrefix(userID)
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix, MaxKeys: aws.Int32(int32(limit))}
	if cursor != "" {
		// The cursor is only a bound for StartAfter, never an object's key, and
		// the Prefix keeps the listing inside the user's originals whatever it
		// is; it must still be inside that prefix, so that a cursor naming
		// another user's keys is refused rather than silently ignored.
		if !strings.HasPrefix(cursor, prefix) || len(cursor) > keylayout.MaxKeyBytes || !utf8.ValidString(cursor) {
			return PhotoPage{}, refuse(op, userID, cursor, cursorReason(cursor, userID), fmt.Errorf("%w: a cursor is a key under %s", keylayout.ErrUnsafeKey, prefix))
		}
		in.StartAfter = &cursor
	}
	out, err := s.client.ListObjectsV2(ctx, in)
	if err != nil {
		return PhotoPage{}, fmt.Errorf("list photos of user %s: %w", userID, err)
	}
	var page PhotoPage
	for _, o := range out.Contents {
		k := aws.ToString(o.Key)
		// Only originals of the layout count as photos; anything else a prefix
		// upload left under raw/ is not listed (DeletePhoto still removes it).
		if u, err := keylayout.ParseUserKey(k); err == nil && u.Kind == keylayout.KindOriginal && u.UserID == userID {
			page.Photos = append(page.Photos, ListedPhoto{PhotoID: u.PhotoID, Key: k, Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)})
		}
	}
	if aws.ToBool(out.IsTruncated) && len(out.Contents) > 0 {
		page.Next = aws.ToString(out.Contents[len(out.Contents)-1].Key)
	}
	return page, nil
}

// cursorReason classifies a refused cursor as checkKey classifies keys.
func cursorReason(cursor, userID string) Reason {
	switch {
	case strings.HasPrefix(cursor, keylayout.UserPrefix(userID)):
		return ReasonUnsafeKey
	case keylayout.IsUserScoped(cursor):
		return ReasonOtherUser
	}
	return ReasonOutsidePrefix
}
