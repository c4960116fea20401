package storage

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// UploadRequest asks for a presigned upload of a photo's original.
type UploadRequest struct {
	// PhotoID is the photo the original belongs to.
	PhotoID string
	// ContentType is the image type the client will send; the policy requires
	// exactly this Content-Type field. It must be one of the service's
	// UploadContentTypes.
	ContentType string
	// Ext is the original's extension; empty takes the usual one for
	// ContentType (jpg for image/jpeg).
	Ext string
	// PrefixCondition relaxes the policy from the exact key to
	// ["starts-with", "$key", "users/{user}/raw/{photo}/"], letting the client
	// choose the file name. Off by default, because the client then chooses
	// the whole key: S3 stores it literally, but a server that maps keys to
	// file paths (versitygw's posix backend does) resolves "..", so
	// users/A/raw/P/../../../B/... lands in user B's prefix. See
	// TestPresignedPrefixPolicyEscapesOnNormalisingServer.
	PrefixCondition bool
	// Expires overrides the service's UploadExpiry (at most MaxExpiry).
	Expires time.Duration
	// MaxBytes lowers the service's UploadMaxBytes for this upload.
	MaxBytes int64
}

// PresignedUpload is a presigned POST: the client sends a multipart/form-data
// POST to URL with every field of Fields and then the file, in a field named
// "file", last.
type PresignedUpload struct {
	URL string
	// Fields are the form fields: key, Content-Type, policy and the
	// X-Amz-* signature fields.
	Fields map[string]string
	// Key is the object key the upload writes (the "key" field).
	Key string
	// KeyCondition is the policy's key condition as JSON, for operators.
	KeyCondition string
	// MinBytes and MaxBytes are the policy's content-length-range.
	MinBytes, MaxBytes int64
	// Expires is the policy's expiration.
	Expires time.Time
	// Policy is the decoded policy document.
	Policy json.RawMessage
}

// PresignUpload returns a presigned POST with which a client can upload the
// original of one of the acting user's photos. The policy, which S3 enforces,
// pins the key (or, with PrefixCondition, the photo's raw/ prefix), the size
// range, the content type and a short expiry.
func (s *Service) PresignUpload(ctx context.Context, userID string, in UploadRequest) (*PresignedUpload, error) {
	const op = "presign upload"
	if err := checkUser(op, userID); err != nil {
		return nil, err
	}
	if err := checkPhotoID(op, userID, in.PhotoID); err != nil {
		return nil, err
	}
	if !s.contentTypes[in.ContentType] {
		return nil, fmt.Errorf("presign upload for user %s: content type %q is not one of %v: %w", userID, in.ContentType, s.opts.UploadContentTypes, ErrInvalidRequest)
	}
	ext := in.Ext
	if ext == "" {
		ext = DefaultUploadContentTypes[in.ContentType]
		if ext == "" {
			return nil, fmt.Errorf("presign upload for user %s: no usual extension for %q, give one: %w", userID, in.ContentType, ErrInvalidRequest)
		}
	}
	k, err := key(op, userID, Original(in.PhotoID, ext))
	if err != nil {
		return nil, err
	}
	expires, err := s.expiry(in.Expires, s.opts.UploadExpiry)
	if err != nil {
		return nil, fmt.Errorf("presign upload for user %s: %w", userID, err)
	}
	maxBytes := s.opts.UploadMaxBytes
	if in.MaxBytes != 0 {
		if in.MaxBytes < s.opts.UploadMinBytes || in.MaxBytes > s.opts.UploadMaxBytes {
			return nil, fmt.Errorf("presign upload for user %s: max size %d outside [%d, %d]: %w", userID, in.MaxBytes, s.opts.UploadMinBytes, s.opts.UploadMaxBytes, ErrInvalidRequest)
		}
		maxBytes = in.MaxBytes
	}

	// The key condition must be an []any for the SDK to see it and not add its
	// own {"key": ...} condition (which would pin the exact key anyway).
	var keyCond any = map[string]string{"key": k}
	if in.PrefixCondition {
		keyCond = []any{"starts-with", "$key", keylayout.OriginalPrefix(userID, in.PhotoID)}
	}
	conditions := []any{
		keyCond,
		[]any{"content-length-range", s.opts.UploadMinBytes, maxBytes},
		// Every form field must be covered by a condition (S3 and versitygw
		// refuse extra fields), and a fixed type keeps the client from
		// declaring text/html or image/svg+xml.
		[]any{"eq", "$Content-Type", in.ContentType},
	}
	out, err := s.presign.PresignPostObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &k}, func(o *s3.PresignPostOptions) {
		o.Expires = expires
		o.Conditions = conditions
	})
	if err != nil {
		return nil, fmt.Errorf("presign upload of s3://%s/%s: %w", s.bucket, k, err)
	}
	fields := make(map[string]string, len(out.Values)+1)
	for f, v := range out.Values {
		fields[f] = v
	}
	fields["key"] = k
	fields["Content-Type"] = in.ContentType
	up := &PresignedUpload{URL: out.URL, Fields: fields, Key: k, MinBytes: s.opts.UploadMinBytes, MaxBytes: maxBytes}
	kc, _ := json.Marshal(keyCond)
	up.KeyCondition = string(kc)
	if err := up.decodePolicy(); err != nil {
		return nil, fmt.Errorf("presign upload of s3://%s/%s: %w", s.bucket, k, err)
	}
	return up, nil
}

// decodePolicy reads the policy's expiration back, so Expires is the instant S3
// will enforce rather than an estimate of the SDK's signing time.
func (u *PresignedUpload) decodePolicy() error {
	raw, err := base64.StdEncoding.DecodeString(u.Fields["policy"])
	if err != nil {
		return fmt.Errorf("decode policy: %w", err)
	}
	var p struct {
		Expiration time.Time `json:"expiration"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("decode policy %s: %w", raw, err)
	}
	u.Policy = raw
	u.Expires = p.Expiration
	return nil
}

// PresignedDownload is a presigned GET URL.
type PresignedDownload struct {
	URL     string
	Key     string
	Expires time.Time
}

// PresignDownload returns a presigned GET URL for key, which must be a key of
// the layout owned by the acting user. expires 0 takes the service's
// DownloadExpiry.
func (s *Service) PresignDownload(ctx context.Context, userID, key string, expires time.Duration) (*PresignedDownload, error) {
	const op = "presign download"
	if _, err := checkKey(op, userID, key); err != nil {
		return nil, err
	}
	d, err := s.expiry(expires, s.opts.DownloadExpiry)
	if err != nil {
		return nil, fmt.Errorf("presign download for user %s: %w", userID, err)
	}
	now := time.Now()
	out, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}, s3.WithPresignExpires(d))
	if err != nil {
		return nil, fmt.Errorf("presign download of s3://%s/%s: %w", s.bucket, key, err)
	}
	return &PresignedDownload{URL: out.URL, Key: key, Expires: now.Add(d)}, nil
}

func (s *Service) expiry(asked, def time.Duration) (time.Duration, error) {
	switch {
	case asked == 0:
		return def, nil
	case asked < time.Second || asked > s.opts.MaxExpiry:
		return 0, fmt.Errorf("expiry %s: want between 1s and %s: %w", asked, s.opts.MaxExpiry, ErrInvalidRequest)
	}
	return asked, nil
}
