// Package objstore is the migration's view of S3: HEAD with checksums,
// server-side copies that keep everything an object carries, verification of a
// copy against its source, and the few listing, reading and writing calls the
// seeder, verify and cleanup need.
//
// No object's bytes pass through the worker on the copy path (CopyObject, or
// UploadPartCopy above the multipart threshold); only a verification that
// cannot be decided from checksums reads both objects, streaming, with two small
// buffers.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// ErrNotFound is returned when an object does not exist.
var ErrNotFound = errors.New("object not found")

// ErrPrecondition is returned when a conditional request was refused: the source
// changed since it was read (CopySourceIfMatch), or the destination appeared or
// changed (IfNoneMatch, IfMatch).
var ErrPrecondition = errors.New("precondition failed")

// Options tune copies.
type Options struct {
	// MultipartThreshold is the size above which objects are copied part by
	// part. S3's CopyObject accepts at most 5 GiB.
	MultipartThreshold int64
	// PartSize is the size of each UploadPartCopy (at least 5 MiB; raised if the
	// object would otherwise need more than 10,000 parts).
	PartSize int64
	// PartConcurrency bounds the parts of one object copied at once.
	PartConcurrency int
	// DefaultChecksum is the algorithm asked for on a single-part copy when the
	// source carries no full-object checksum to match.
	DefaultChecksum types.ChecksumAlgorithm
	// MultipartChecksum is the algorithm asked for on multipart copies. Empty
	// (the default) asks for none and lets the server compute its default
	// full-object checksum (CRC64NVME on S3 and versitygw). Naming an algorithm
	// makes a multipart copy comparable with a source that carries it, but
	// some S3-compatible servers (versitygw v1.8.0) then store a wrong
	// checksum, which clients that validate checksums on GET reject.
	MultipartChecksum types.ChecksumAlgorithm
	// DestinationCheck says how copies avoid replacing objects keymigrate did
	// not write (default DestinationAuto).
	DestinationCheck DestinationCheck
}

// DefaultOptions are the production defaults.
func DefaultOptions() Options {
	return Options{
		MultipartThreshold: 5 << 30,
		PartSize:           256 << 20,
		PartConcurrency:    4,
		DefaultChecksum:    types.ChecksumAlgorithmCrc64nvme,
	}
}

const (
	minPartSize = 5 << 20
	maxParts    = 10000
)

// Store is a bucket.
type Store struct {
	client *s3.Client
	bucket string
	opts   Options
	// caps is what the server is known to enforce; until it is set every copy
	// reads its destination first and every delete reads the object first.
	caps caps
}

// New returns a Store for bucket.
func New(client *s3.Client, bucket string, opts Options) *Store {
	d := DefaultOptions()
	if opts.MultipartThreshold <= 0 {
		opts.MultipartThreshold = d.MultipartThreshold
	}
	if opts.PartSize < minPartSize {
		opts.PartSize = max(d.PartSize, minPartSize)
		if opts.MultipartThreshold < d.PartSize {
			opts.PartSize = minPartSize
		}
	}
	if opts.PartConcurrency <= 0 {
		opts.PartConcurrency = d.PartConcurrency
	}
	if opts.DestinationCheck == "" {
		opts.DestinationCheck = DestinationAuto
	}
	if opts.DefaultChecksum == "" {
		opts.DefaultChecksum = d.DefaultChecksum
	}
	return &Store{client: client, bucket: bucket, opts: opts}
}

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Client exposes the S3 client (for the benchmark's raw loop and tests).
func (s *Store) Client() *s3.Client { return s.client }

// Info is what a HEAD tells about an object.
type Info struct {
	Key                string
	Size               int64
	ETag               string
	ContentType        string
	CacheControl       string
	ContentDisposition string
	ContentEncoding    string
	ContentLanguage    string
	// Expires is the raw Expires header (S3 keeps it as the client sent it).
	Expires string
	// WebsiteRedirectLocation is x-amz-website-redirect-location. S3 does not
	// carry it on a copy with MetadataDirective COPY: the copy sets it.
	WebsiteRedirectLocation string
	Metadata                map[string]string
	StorageClass            types.StorageClass
	SSE                     types.ServerSideEncryption
	KMSKeyID                string
	// Checksums maps each algorithm the object carries to its value.
	Checksums    map[types.ChecksumAlgorithm]string
	ChecksumType types.ChecksumType
	LastModified time.Time
	// ObjectLock describes retention or a legal hold on the object ("" when
	// none). A copy cannot carry them into a bucket without Object Lock, so
	// the worker reports them.
	ObjectLock string
	// ACL describes grants beyond the owner's full control, where the bucket
	// keeps ACLs and the reader asked (ACLNotCarried); a copy does not carry
	// them.
	ACL string
}

// NotCarried names what a copy of the object cannot carry ("" if nothing):
// reported per object in the ledger, never silently dropped.
func (i Info) NotCarried() string {
	var parts []string
	if i.ObjectLock != "" {
		parts = append(parts, "Object Lock "+i.ObjectLock)
	}
	if i.ACL != "" {
		parts = append(parts, i.ACL)
	}
	return strings.Join(parts, "; ")
}

// Multipart reports whether the object was assembled from parts (its ETag is
// then not an MD5 of the bytes).
func (i Info) Multipart() bool { return strings.Contains(i.ETag, "-") }

// Head reads an object's attributes, including its checksums.
func (s *Store) Head(ctx context.Context, key string) (Info, error) {
	return s.head(ctx, key, "")
}

// HeadIfMatch reads an object only if it still has etag: the read of a copy
// keymigrate made is pinned to the ETag its write returned, so that bytes
// someone else wrote there since are never taken for keymigrate's. Another
// ETag is ErrPrecondition (also on servers that ignore If-Match on HEAD).
func (s *Store) HeadIfMatch(ctx context.Context, key, etag string) (Info, error) {
	if etag == "" {
		return Info{}, fmt.Errorf("head s3://%s/%s: no ETag to pin the read to", s.bucket, key)
	}
	i, err := s.head(ctx, key, etag)
	if err == nil && i.ETag != etag {
		return Info{}, fmt.Errorf("head s3://%s/%s: ETag %s, want %s: %w", s.bucket, key, i.ETag, etag, ErrPrecondition)
	}
	return i, err
}

func (s *Store) head(ctx context.Context, key, ifMatch string) (Info, error) {
	in := &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled}
	if ifMatch != "" {
		in.IfMatch = &ifMatch
	}
	out, err := s.client.HeadObject(ctx, in)
	if err != nil && isForbidden(err) {
		// S3 answers a HEAD of a missing key with 403, not 404, unless the
		// caller may list the bucket without conditions, which the worker's
		// least-privilege role may not (its ListBucket is limited to
		// prefixes). A listing of exactly this key tells the two apart.
		if absent, lerr := s.absent(ctx, key); lerr == nil && absent {
			return Info{}, fmt.Errorf("head s3://%s/%s: %w (403 on HEAD, and no such key in a listing)", s.bucket, key, ErrNotFound)
		}
	}
	if err != nil {
		return Info{}, fmt.Errorf("head s3://%s/%s: %w", s.bucket, key, classify(err))
	}
	i := Info{
		Key:                     key,
		Size:                    aws.ToInt64(out.ContentLength),
		ETag:                    aws.ToString(out.ETag),
		ContentType:             aws.ToString(out.ContentType),
		CacheControl:            aws.ToString(out.CacheControl),
		ContentDisposition:      aws.ToString(out.ContentDisposition),
		ContentEncoding:         aws.ToString(out.ContentEncoding),
		ContentLanguage:         aws.ToString(out.ContentLanguage),
		Expires:                 aws.ToString(out.ExpiresString),
		WebsiteRedirectLocation: aws.ToString(out.WebsiteRedirectLocation),
		Metadata:                out.Metadata,
		StorageClass:            types.StorageClass(out.StorageClass),
		SSE:                     out.ServerSideEncryption,
		KMSKeyID:                aws.ToString(out.SSEKMSKeyId),
		ChecksumType:            out.ChecksumType,
		LastModified:            aws.ToTime(out.LastModified),
		Checksums:               map[types.ChecksumAlgorithm]string{},
	}
	addChecksums(i.Checksums, out.ChecksumCRC64NVME, out.ChecksumCRC32C, out.ChecksumCRC32, out.ChecksumSHA256, out.ChecksumSHA1)
	i.ObjectLock = objectLock(out.ObjectLockMode, out.ObjectLockRetainUntilDate, out.ObjectLockLegalHoldStatus)
	return i, nil
}

// addChecksums records the checksums a response carried, in the order
// CRC64NVME, CRC32C, CRC32, SHA256, SHA1.
func addChecksums(dst map[types.ChecksumAlgorithm]string, crc64, crc32c, crc32, sha256, sha1 *string) {
	for alg, v := range map[types.ChecksumAlgorithm]*string{
		types.ChecksumAlgorithmCrc64nvme: crc64,
		types.ChecksumAlgorithmCrc32c:    crc32c,
		types.ChecksumAlgorithmCrc32:     crc32,
		types.ChecksumAlgorithmSha256:    sha256,
		types.ChecksumAlgorithmSha1:      sha1,
	} {
		if v != nil && *v != "" {
			dst[alg] = *v
		}
	}
}

func objectLock(mode types.ObjectLockMode, until *time.Time, hold types.ObjectLockLegalHoldStatus) string {
	var parts []string
	if mode != "" {
		p := "retention " + string(mode)
		if until != nil {
			p += " until " + until.UTC().Format(time.RFC3339)
		}
		parts = append(parts, p)
	}
	if hold == types.ObjectLockLegalHoldStatusOn {
		parts = append(parts, "legal hold")
	}
	return strings.Join(parts, ", ")
}

// Exists reports whether key exists.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	_, err := s.Head(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// classify maps SDK errors onto ErrNotFound and ErrPrecondition, keeping the
// original error in the chain.
func classify(err error) error {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case http.StatusPreconditionFailed:
			return fmt.Errorf("%w: %w", ErrPrecondition, err)
		}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if sentinel := codeMeaning(ae.ErrorCode()); sentinel != nil {
			return fmt.Errorf("%w: %w", sentinel, err)
		}
	}
	return err
}

// codeMeaning is the sentinel an S3 error code stands for (ErrNotFound,
// ErrPrecondition), or nil. It reads the codes of whole-request errors and of
// the per-key errors of DeleteObjects alike.
func codeMeaning(code string) error {
	switch code {
	case "NoSuchKey", "NotFound":
		return ErrNotFound
	case "PreconditionFailed", "ConditionalRequestConflict":
		return ErrPrecondition
	}
	return nil
}

func isForbidden(err error) bool {
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden
}

// absent lists exactly key and reports whether no object has it.
func (s *Store) absent(ctx context.Context, key string) (bool, error) {
	out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &key, MaxKeys: aws.Int32(1)})
	if err != nil {
		return false, err
	}
	return len(out.Contents) == 0 || aws.ToString(out.Contents[0].Key) != key, nil
}

// IsThrottle reports whether err is S3 asking the client to slow down.
func IsThrottle(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests":
			return true
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusServiceUnavailable
}

// copySource is bucket/key with the key percent-encoded segment by segment: S3
// URL-decodes x-amz-copy-source, so an unencoded "+", "%" or space in a key
// would name a different object.
func copySource(bucket, key string) string {
	var b strings.Builder
	b.WriteString(bucket)
	b.WriteByte('/')
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '/' || c == '-' || c == '_' || c == '.' || c == '~' ||
			('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// ListEach calls fn for every object under prefix, a page at a time, so memory
// does not grow with the number of objects.
func (s *Store) ListEach(ctx context.Context, prefix string, fn func(key string, size int64, etag string) error) error {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list s3://%s/%s: %w", s.bucket, prefix, classify(err))
		}
		for _, o := range page.Contents {
			if err := fn(aws.ToString(o.Key), aws.ToInt64(o.Size), aws.ToString(o.ETag)); err != nil {
				return err
			}
		}
	}
	return nil
}

// List returns the keys under prefix. Use it only where the number of objects is
// small by construction (a job's animations).
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	err := s.ListEach(ctx, prefix, func(k string, _ int64, _ string) error {
		keys = append(keys, k)
		return nil
	})
	return keys, err
}

// PutInput describes an object to write.
type PutInput struct {
	Key         string
	Body        []byte
	ContentType string
	Metadata    map[string]string
	Tagging     string // URL-encoded "k1=v1&k2=v2"
	Checksum    types.ChecksumAlgorithm
	// The other content headers, for tests and seeds that need them.
	CacheControl, ContentDisposition, ContentEncoding, ContentLanguage string
	Expires                                                            *time.Time
	WebsiteRedirectLocation                                            string
}

// Put writes an object (the seeder and tests use it; the migration never does).
func (s *Store) Put(ctx context.Context, in PutInput) error {
	put := &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &in.Key, Body: strings.NewReader(string(in.Body)),
		ContentLength: aws.Int64(int64(len(in.Body))), Metadata: in.Metadata, ChecksumAlgorithm: in.Checksum,
	}
	if in.ContentType != "" {
		put.ContentType = &in.ContentType
	}
	if in.Tagging != "" {
		put.Tagging = &in.Tagging
	}
	for _, h := range []struct {
		v   string
		dst **string
	}{
		{in.CacheControl, &put.CacheControl}, {in.ContentDisposition, &put.ContentDisposition},
		{in.ContentEncoding, &put.ContentEncoding}, {in.ContentLanguage, &put.ContentLanguage},
		{in.WebsiteRedirectLocation, &put.WebsiteRedirectLocation},
	} {
		if h.v != "" {
			*h.dst = aws.String(h.v)
		}
	}
	put.Expires = in.Expires
	if _, err := s.client.PutObject(ctx, put); err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", s.bucket, in.Key, classify(err))
	}
	return nil
}

// PutStream writes an object of known size from r (for large seeded objects,
// without holding them in memory).
func (s *Store) PutStream(ctx context.Context, key string, r io.ReadSeeker, size int64, contentType string, metadata map[string]string) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &key, Body: r, ContentLength: aws.Int64(size),
		ContentType: aws.String(contentType), Metadata: metadata,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
	})
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", s.bucket, key, classify(err))
	}
	return nil
}

// Get reads a whole object into memory (tests and small objects only).
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", s.bucket, key, classify(err))
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", s.bucket, key, err)
	}
	return b, nil
}

// Tags returns an object's tags.
func (s *Store) Tags(ctx context.Context, key string) (map[string]string, error) {
	out, err := s.client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("get tags of s3://%s/%s: %w", s.bucket, key, classify(err))
	}
	tags := make(map[string]string, len(out.TagSet))
	for _, t := range out.TagSet {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return tags, nil
}

// Delete removes one object (tests; cleanup uses DeleteBatch).
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil {
		return fmt.Errorf("delete s3://%s/%s: %w", s.bucket, key, classify(err))
	}
	return nil
}

// EnsureBucket creates the bucket if it does not exist.
func (s *Store) EnsureBucket(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err == nil {
		return nil
	}
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", s.bucket, err)
	}
	return nil
}

// DeleteReason is why a delete left an object in place, as a value callers
// compare (the message, for people, is in DeleteFailure).
type DeleteReason string

// The delete reasons.
const (
	// DeleteNotFound: there was no object to delete (S3's NoSuchKey, or the
	// read before a delete found none). Whoever deleted it, it is gone.
	DeleteNotFound DeleteReason = "not_found"
	// DeletePreconditionFailed: the object no longer has the ETag the delete
	// was conditional on (S3's PreconditionFailed, or the read before a delete
	// saw another ETag): its bytes are someone else's and were kept.
	DeletePreconditionFailed DeleteReason = "precondition_failed"
	// DeleteOther: any other refusal (AccessDenied, InternalError, ...).
	DeleteOther DeleteReason = "other"
)

// DeleteFailure says why one key of a batch delete was not deleted.
type DeleteFailure struct {
	Reason DeleteReason
	// Code is S3's error code ("NoSuchKey", "PreconditionFailed",
	// "AccessDenied", ...) for the delete, or for the read before it on a
	// server that does not enforce the condition; empty when no S3 error said
	// it (the read found another ETag).
	Code string
	// Message describes the failure for people.
	Message string
}

// String is the failure as an operator reads it.
func (f DeleteFailure) String() string {
	if f.Code == "" {
		return f.Message
	}
	return f.Code + ": " + f.Message
}

// deleteFailure is the DeleteFailure of one per-key error of DeleteObjects.
func deleteFailure(e types.Error) DeleteFailure {
	f := DeleteFailure{Reason: DeleteOther, Code: aws.ToString(e.Code), Message: aws.ToString(e.Message)}
	switch codeMeaning(f.Code) {
	case ErrNotFound:
		f.Reason = DeleteNotFound
	case ErrPrecondition:
		f.Reason = DeletePreconditionFailed
	}
	return f
}

// DeleteBatch deletes up to 1,000 keys in one call and returns the keys S3
// reports as not deleted, with the reason.
func (s *Store) DeleteBatch(ctx context.Context, keys []string) (map[string]DeleteFailure, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if len(keys) > 1000 {
		return nil, fmt.Errorf("delete batch: %d keys, S3 takes at most 1000", len(keys))
	}
	ids := make([]types.ObjectIdentifier, len(keys))
	for i, k := range keys {
		ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
	}
	out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &s.bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
	if err != nil {
		return nil, fmt.Errorf("delete %d objects from %s: %w", len(keys), s.bucket, classify(err))
	}
	failed := map[string]DeleteFailure{}
	for _, e := range out.Errors {
		failed[aws.ToString(e.Key)] = deleteFailure(e)
	}
	return failed, nil
}
