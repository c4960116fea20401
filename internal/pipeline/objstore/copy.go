package objstore

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// CopyResult describes the object a copy wrote, as the write's own response
// tells it: this ETag, and nothing a later read returns, is how keymigrate
// knows its own writes.
type CopyResult struct {
	ETag      string
	Multipart bool
	Algorithm types.ChecksumAlgorithm
	// Checksums are those the response carried (the requested algorithm's,
	// on servers that return it).
	Checksums    map[types.ChecksumAlgorithm]string
	ChecksumType types.ChecksumType
}

// Copy copies src to dstKey on the server, pinned to src's ETag so that a
// concurrent overwrite of the source fails the copy (ErrPrecondition) instead of
// copying other bytes. Content type, the other content headers, user metadata,
// tags, storage class and KMS encryption are kept.
//
// overwriteETag guards the destination: empty means the destination must not
// exist (If-None-Match: *); otherwise it must still have that ETag (If-Match).
// S3 enforces these conditions. On servers that ignore them the caller reads
// the destination right before calling Copy, and Copy reads it again before
// any retry, so that no retry lands on bytes written since (guard.go).
func (s *Store) Copy(ctx context.Context, src Info, dstKey, overwriteETag string) (CopyResult, error) {
	return s.CopyExpecting(ctx, src, dstKey, overwriteETag, nil)
}

// CopyExpecting is Copy that first hands expect the ETag the copy will have,
// where it can be known before the write that creates the object is sent:
// for a single-part copy the source's ETag it is pinned to (a CopyObject of a
// single-part, non-KMS source has its source's ETag, the MD5 of its bytes);
// for a multipart copy, once its parts are copied and before
// CompleteMultipartUpload is sent, the MD5 of its parts' MD5s and their
// count, as S3 computes it. expect is not called for a KMS-encrypted source
// (whose ETags are no MD5s) or when a part's ETag is not an MD5. The caller
// records the ETag, so that it knows the copy as its own even if the write's
// response is lost (F12 in docs/soak-findings.md); an error from expect
// stops the copy before that write is sent.
func (s *Store) CopyExpecting(ctx context.Context, src Info, dstKey, overwriteETag string, expect func(etag string) error) (CopyResult, error) {
	return s.copy(ctx, src, dstKey, overwriteETag, s.copyAlgorithm(src), src.Size > s.opts.MultipartThreshold, expect)
}

// CopyBack copies src to dstKey, which must not exist, for a rollback that
// restores a legacy object cleanup deleted: alg is the checksum algorithm
// the legacy object had (its full-object one, recorded when it was moved;
// "" when it had none or none was recorded). Unlike Copy it asks for alg
// whatever src carries, and it copies in one CopyObject whatever the
// multipart threshold, up to CopyObject's 5 GiB: a multipart copy that names
// an algorithm can be stored with a wrong checksum on S3-compatible servers
// (versitygw v1.8.0 does when its source carries the algorithm named, see
// Options.MultipartChecksum), while one CopyObject computes alg over the
// whole object, and gives the legacy key back a single-part object, as it
// most likely held (F13 in docs/soak-findings.md). The threshold tunes the
// workers' copies; a restore is rare and wants the object as it was. Above 5 GiB the copy is in parts as Copy makes it,
// with MultipartChecksum, so alg is not carried unless it names it.
//
// With alg "" the copy asks for what Copy would. No request lets the copy
// carry no checksum at all: CopyObject keeps the source's (a copy made by
// keymigrate carries one) unless asked for another, so a legacy object that
// had none comes back with one.
func (s *Store) CopyBack(ctx context.Context, src Info, dstKey string, alg types.ChecksumAlgorithm) (CopyResult, error) {
	if src.Size > maxCopyObject {
		return s.copy(ctx, src, dstKey, "", s.copyAlgorithm(src), true, nil)
	}
	if alg == "" {
		// What a single-part Copy of src asks for.
		if alg = src.fullObjectAlgorithm(); alg == "" {
			alg = s.opts.DefaultChecksum
		}
	}
	return s.copy(ctx, src, dstKey, "", alg, false, nil)
}

func (s *Store) copy(ctx context.Context, src Info, dstKey, overwriteETag string, alg types.ChecksumAlgorithm, multipart bool, expect func(etag string) error) (CopyResult, error) {
	if isKMS(src) {
		expect = nil
	}
	if multipart {
		return s.copyMultipart(ctx, src, dstKey, overwriteETag, alg, expect)
	}
	if expect != nil {
		if err := expect(src.ETag); err != nil {
			return CopyResult{}, err
		}
	}
	in := &s3.CopyObjectInput{
		Bucket:            &s.bucket,
		Key:               &dstKey,
		CopySource:        aws.String(copySource(s.bucket, src.Key)),
		CopySourceIfMatch: aws.String(src.ETag),
		MetadataDirective: types.MetadataDirectiveCopy,
		TaggingDirective:  types.TaggingDirectiveCopy,
		StorageClass:      storageClass(src),
		ChecksumAlgorithm: alg,
	}
	if src.WebsiteRedirectLocation != "" {
		// Not carried by MetadataDirective COPY (S3 documents it as unique to
		// each object): set explicitly.
		in.WebsiteRedirectLocation = aws.String(src.WebsiteRedirectLocation)
	}
	if src.Expires != "" {
		// MinIO drops Expires on a MetadataDirective COPY (S3 and versitygw
		// keep it): such an object is copied with REPLACE and every header
		// of the source's HEAD set explicitly, which every server keeps. Only
		// then, so that the usual copy stays the plain COPY.
		t, err := http.ParseTime(src.Expires)
		if err != nil {
			return CopyResult{}, fmt.Errorf("copy of s3://%s/%s: its Expires header %q is not an HTTP date, so the copy could not carry it", s.bucket, src.Key, src.Expires)
		}
		in.MetadataDirective, in.Expires, in.Metadata = types.MetadataDirectiveReplace, &t, src.Metadata
		setContentHeaders(src, &in.ContentType, &in.CacheControl, &in.ContentDisposition, &in.ContentEncoding, &in.ContentLanguage)
	}
	setSSE(src, &in.ServerSideEncryption, &in.SSEKMSKeyId)
	if overwriteETag == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(overwriteETag)
	}
	var out *s3.CopyObjectOutput
	send := func(optFns ...func(*s3.Options)) (err error) {
		out, err = s.client.CopyObject(ctx, in, optFns...)
		return err
	}
	var err error
	if s.ConditionalCopy() {
		err = send()
	} else {
		// The caller read the destination right before calling; a retry reads
		// it again (guardedWrite).
		err = s.guardedWrite(ctx, dstKey, overwriteETag, false, send)
	}
	if err != nil {
		// A copy that fails inside a 200 response is returned here by the SDK.
		return CopyResult{}, fmt.Errorf("copy s3://%s/%s to %s: %w", s.bucket, src.Key, dstKey, classify(err))
	}
	res := CopyResult{Algorithm: alg, Checksums: map[types.ChecksumAlgorithm]string{}}
	if r := out.CopyObjectResult; r != nil {
		res.ETag = aws.ToString(r.ETag)
		res.ChecksumType = r.ChecksumType
		addChecksums(res.Checksums, r.ChecksumCRC64NVME, r.ChecksumCRC32C, r.ChecksumCRC32, r.ChecksumSHA256, r.ChecksumSHA1)
	}
	if res.ETag == "" {
		// Without the ETag of its own write keymigrate could not tell its copy
		// from someone else's bytes later: treat it as a failed copy.
		return CopyResult{}, fmt.Errorf("copy s3://%s/%s to %s: the response carries no ETag", s.bucket, src.Key, dstKey)
	}
	return res, nil
}

// copyAlgorithm picks the checksum the copy is asked to compute. A single-part
// copy asks for the source's own full-object algorithm when it has one, so that
// source and copy compare without reading them, else the default. A multipart
// copy asks for MultipartChecksum (see Options).
func (s *Store) copyAlgorithm(src Info) types.ChecksumAlgorithm {
	if src.Size > s.opts.MultipartThreshold {
		return s.opts.MultipartChecksum
	}
	if alg := src.fullObjectAlgorithm(); alg != "" {
		return alg
	}
	return s.opts.DefaultChecksum
}

// SourceChecksumAlgorithm is the algorithm of i's own full-object checksum
// ("" if it carries none): what a copy of i must ask for to carry it. A
// composite checksum (of a multipart upload's parts) is no such algorithm:
// no copy can reproduce it.
func (i Info) SourceChecksumAlgorithm() types.ChecksumAlgorithm { return i.fullObjectAlgorithm() }

func (i Info) fullObjectAlgorithm() types.ChecksumAlgorithm {
	if !fullObject(i) {
		return ""
	}
	for _, alg := range preferredAlgorithms {
		if _, ok := i.Checksums[alg]; ok {
			return alg
		}
	}
	return ""
}

func storageClass(src Info) types.StorageClass {
	if src.StorageClass == "" {
		return types.StorageClassStandard
	}
	return src.StorageClass
}

// setContentHeaders sets, on a write that does not copy them, the content
// headers src carries.
func setContentHeaders(src Info, contentType, cacheControl, disposition, encoding, language **string) {
	for _, h := range []struct {
		v   string
		dst **string
	}{
		{src.ContentType, contentType},
		{src.CacheControl, cacheControl},
		{src.ContentDisposition, disposition},
		{src.ContentEncoding, encoding},
		{src.ContentLanguage, language},
	} {
		if h.v != "" {
			*h.dst = aws.String(h.v)
		}
	}
}

func setSSE(src Info, sse *types.ServerSideEncryption, kms **string) {
	if src.SSE == types.ServerSideEncryptionAwsKms || src.SSE == types.ServerSideEncryptionAwsKmsDsse {
		*sse = src.SSE
		if src.KMSKeyID != "" {
			*kms = aws.String(src.KMSKeyID)
		}
	}
}

// copyMultipart copies src with UploadPartCopy. Metadata is not carried by part
// copies, so everything the source carries is set on CreateMultipartUpload.
func (s *Store) copyMultipart(ctx context.Context, src Info, dstKey, overwriteETag string, alg types.ChecksumAlgorithm, expect func(string) error) (CopyResult, error) {
	tags, err := s.Tags(ctx, src.Key)
	if err != nil {
		return CopyResult{}, err
	}
	create := &s3.CreateMultipartUploadInput{
		Bucket:            &s.bucket,
		Key:               &dstKey,
		Metadata:          src.Metadata,
		StorageClass:      storageClass(src),
		ChecksumAlgorithm: alg,
	}
	if alg != "" {
		create.ChecksumType = types.ChecksumTypeFullObject
	}
	setContentHeaders(src, &create.ContentType, &create.CacheControl, &create.ContentDisposition, &create.ContentEncoding, &create.ContentLanguage)
	if src.WebsiteRedirectLocation != "" {
		create.WebsiteRedirectLocation = aws.String(src.WebsiteRedirectLocation)
	}
	if src.Expires != "" {
		t, err := http.ParseTime(src.Expires)
		if err != nil {
			return CopyResult{}, fmt.Errorf("multipart copy of s3://%s/%s: its Expires header %q is not an HTTP date, so the copy could not carry it", s.bucket, src.Key, src.Expires)
		}
		create.Expires = &t
	}
	if len(tags) > 0 {
		create.Tagging = aws.String(encodeTags(tags))
	}
	setSSE(src, &create.ServerSideEncryption, &create.SSEKMSKeyId)
	mpu, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return CopyResult{}, fmt.Errorf("start multipart copy of s3://%s/%s to %s: %w", s.bucket, src.Key, dstKey, classify(err))
	}
	uploadID := aws.ToString(mpu.UploadId)
	abort := func() {
		// Abort with a context of its own: the copy's may be what was cancelled.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultAbortTimeout)
		defer cancel()
		_, _ = s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &dstKey, UploadId: &uploadID})
	}

	partSize := s.opts.PartSize
	if src.Size/partSize >= maxParts {
		partSize = src.Size/(maxParts-1) + 1
	}
	var (
		mu    sync.Mutex
		parts []types.CompletedPart
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.PartConcurrency)
	source := copySource(s.bucket, src.Key)
	for n, off := int32(1), int64(0); off < src.Size; n, off = n+1, off+partSize {
		n, off := n, off
		end := min(off+partSize, src.Size) - 1
		g.Go(func() error {
			out, err := s.client.UploadPartCopy(gctx, &s3.UploadPartCopyInput{
				Bucket: &s.bucket, Key: &dstKey, UploadId: &uploadID, PartNumber: aws.Int32(n),
				CopySource: aws.String(source), CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
				CopySourceIfMatch: aws.String(src.ETag),
			})
			if err != nil {
				return fmt.Errorf("copy part %d (bytes %d-%d) of s3://%s/%s: %w", n, off, end, s.bucket, src.Key, classify(err))
			}
			p := types.CompletedPart{PartNumber: aws.Int32(n)}
			if r := out.CopyPartResult; r != nil {
				p.ETag, p.ChecksumCRC32, p.ChecksumCRC32C, p.ChecksumCRC64NVME = r.ETag, r.ChecksumCRC32, r.ChecksumCRC32C, r.ChecksumCRC64NVME
			}
			mu.Lock()
			parts = append(parts, p)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		abort()
		return CopyResult{}, err
	}
	sort.Slice(parts, func(i, j int) bool { return *parts[i].PartNumber < *parts[j].PartNumber })
	if etag, ok := MultipartETag(parts); ok && expect != nil {
		if err := expect(etag); err != nil {
			abort()
			return CopyResult{}, err
		}
	}
	complete := &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &dstKey, UploadId: &uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		ChecksumType:    create.ChecksumType,
	}
	if overwriteETag == "" {
		complete.IfNoneMatch = aws.String("*")
	} else {
		complete.IfMatch = aws.String(overwriteETag)
	}
	var out *s3.CompleteMultipartUploadOutput
	send := func(optFns ...func(*s3.Options)) (err error) {
		out, err = s.client.CompleteMultipartUpload(ctx, complete, optFns...)
		return err
	}
	if s.ConditionalCopy() {
		err = send()
	} else {
		// The parts took a while: the destination is read again before the
		// upload completes, and before each retry (guardedWrite).
		err = s.guardedWrite(ctx, dstKey, overwriteETag, true, send)
	}
	if err != nil {
		abort()
		return CopyResult{}, fmt.Errorf("complete multipart copy of s3://%s/%s to %s: %w", s.bucket, src.Key, dstKey, classify(err))
	}
	res := CopyResult{ETag: aws.ToString(out.ETag), Multipart: true, Algorithm: alg, ChecksumType: out.ChecksumType, Checksums: map[types.ChecksumAlgorithm]string{}}
	addChecksums(res.Checksums, out.ChecksumCRC64NVME, out.ChecksumCRC32C, out.ChecksumCRC32, out.ChecksumSHA256, out.ChecksumSHA1)
	if res.ETag == "" {
		return CopyResult{}, fmt.Errorf("complete multipart copy of s3://%s/%s to %s: the response carries no ETag", s.bucket, src.Key, dstKey)
	}
	return res, nil
}

// MultipartETag is the ETag S3 gives the object a multipart upload of these
// parts (in order) completes: the MD5 of the concatenated MD5s of the parts,
// a dash and the number of parts. ok is false when a part's ETag is not an
// MD5 (a KMS-encrypted part's, for instance).
func MultipartETag(parts []types.CompletedPart) (string, bool) {
	h := md5.New()
	for _, p := range parts {
		sum, err := hex.DecodeString(strings.Trim(aws.ToString(p.ETag), `"`))
		if err != nil || len(sum) != md5.Size {
			return "", false
		}
		h.Write(sum)
	}
	return fmt.Sprintf(`"%x-%d"`, h.Sum(nil), len(parts)), len(parts) > 0
}

func encodeTags(tags map[string]string) string {
	v := url.Values{}
	for k, val := range tags {
		v.Set(k, val)
	}
	return v.Encode()
}

// maxCopyObject is the largest source one CopyObject copies (5 GiB).
const maxCopyObject = 5 << 30

// CopiesUnread reports whether CopyUnread may be used: only when every source
// one CopyObject can copy is one that Copy would also copy in one request
// (the multipart threshold is not below CopyObject's 5 GiB limit). Otherwise
// a source between the threshold and 5 GiB would be copied whole, refused by
// CopyStandsFor, and copied again in parts: twice the bytes.
func (s *Store) CopiesUnread() bool { return s.opts.MultipartThreshold >= maxCopyObject }

// CopyUnread copies srcKey to dstKey without having read the source first:
// the copy-first path, one request where a read and a copy were two. The copy
// is not pinned to a source ETag (none is known yet) and carries what a
// MetadataDirective COPY carries (content type, user metadata, content
// headers, tags, and on S3 the source's checksum algorithm) with no checksum
// algorithm and no storage class asked for (STANDARD on S3).
// The caller must then read the source and accept the copy only if
// CopyStandsFor says it stands for what it read: that read, made after the
// copy landed, is what proves which bytes were copied.
//
// The destination is guarded as in Copy: it must not exist (If-None-Match: *,
// which the server enforces where ConditionalCopy; elsewhere the caller read
// the destination right before, and every retry reads it again).
func (s *Store) CopyUnread(ctx context.Context, srcKey, dstKey string) (CopyResult, error) {
	in := &s3.CopyObjectInput{
		Bucket:            &s.bucket,
		Key:               &dstKey,
		CopySource:        aws.String(copySource(s.bucket, srcKey)),
		MetadataDirective: types.MetadataDirectiveCopy,
		TaggingDirective:  types.TaggingDirectiveCopy,
		// No storage class: S3 then writes STANDARD, as asking for it does,
		// and a server that keeps the source's class (or, like the scale
		// bench's endpoint, implements no change of class) is not asked to
		// change it. CopyStandsFor refuses a source not in STANDARD either way.
		// No checksum algorithm either: S3 then keeps the source's (and
		// gives one without a checksum its default), where naming the
		// default would replace a source's CRC32 with it. A server that
		// keeps none of the source's algorithms anyway is caught by
		// CopyStandsFor, and the object copied again the careful way,
		// which asks for the source's own.
		IfNoneMatch: aws.String("*"),
	}
	var out *s3.CopyObjectOutput
	send := func(optFns ...func(*s3.Options)) (err error) {
		out, err = s.client.CopyObject(ctx, in, optFns...)
		return err
	}
	var err error
	if s.ConditionalCopy() {
		err = send()
	} else {
		err = s.guardedWrite(ctx, dstKey, "", false, send)
	}
	if err != nil {
		return CopyResult{}, fmt.Errorf("copy s3://%s/%s to %s: %w", s.bucket, srcKey, dstKey, classify(err))
	}
	res := CopyResult{Checksums: map[types.ChecksumAlgorithm]string{}}
	if r := out.CopyObjectResult; r != nil {
		res.ETag = aws.ToString(r.ETag)
		res.ChecksumType = r.ChecksumType
		addChecksums(res.Checksums, r.ChecksumCRC64NVME, r.ChecksumCRC32C, r.ChecksumCRC32, r.ChecksumSHA256, r.ChecksumSHA1)
	}
	if res.ETag == "" {
		return CopyResult{}, fmt.Errorf("copy s3://%s/%s to %s: the response carries no ETag", s.bucket, srcKey, dstKey)
	}
	return res, nil
}

// CopyStandsFor judges a copy made by CopyUnread against src, the HEAD of its
// source made after the copy landed: "" when the copy is proven a faithful
// copy of exactly those bytes and headers, else why not. Only where the server
// was found to keep every header on a copy (CopyKeepsHeaders) can a response
// stand for the copy at all. What the unread copy could not set as Copy would
// have (a storage class other than STANDARD, KMS encryption, a website
// redirect, an Expires header that not every server carries), or a source
// Copy would have copied in parts, is refused here, and the caller copies it
// again the careful way: pinned to a HEAD made first.
func (s *Store) CopyStandsFor(src Info, res CopyResult) string {
	switch {
	case !s.Capabilities().CopyKeepsHeaders:
		return "the server was not found to keep every header on a copy"
	case res.Multipart:
		return "a multipart copy's response does not prove its bytes"
	case storageClass(src) != types.StorageClassStandard:
		return fmt.Sprintf("the source is in storage class %s", src.StorageClass)
	case isKMS(src):
		return "the source is KMS-encrypted"
	case src.WebsiteRedirectLocation != "":
		return "the source has a website redirect location, which a copy does not carry"
	case src.Expires != "":
		return "the source has an Expires header"
	case src.Size > s.opts.MultipartThreshold:
		return fmt.Sprintf("the source's %d bytes are above the multipart threshold", src.Size)
	}
	if alg := checksumLost(src, res); alg != "" {
		return fmt.Sprintf("the source has a %s checksum, the copy carries none of the source's (%v)", alg, res.Checksums)
	}
	if v := Compare(src, FromResponse(src, res)); !v.Equal {
		if v.Reason == "" {
			return "its response does not prove its bytes"
		}
		return v.Reason
	}
	return ""
}

// checksumLost names a full-object checksum algorithm of src ("" if none is
// lost) when the copy's response carries none of src's algorithms: the copy
// made first, not knowing the source's algorithm, names none (S3 then keeps
// the source's), but a server that replaces it with its default would lose
// a source's CRC32, say, though the ETags prove the bytes. The careful path's copy asks for the source's own algorithm
// (copyAlgorithm), and S3's CopyObject keeps it unless told otherwise: a copy
// that dropped it is refused and made again that way.
func checksumLost(src Info, res CopyResult) types.ChecksumAlgorithm {
	if !fullObject(src) || len(src.Checksums) == 0 {
		return ""
	}
	var first types.ChecksumAlgorithm
	for _, alg := range preferredAlgorithms {
		if _, ok := src.Checksums[alg]; !ok {
			continue
		}
		if _, ok := res.Checksums[alg]; ok {
			return ""
		}
		if first == "" {
			first = alg
		}
	}
	return first
}

// ClassDiffers names what of its storage class and encryption an object dst
// that holds src's bytes does not share with src ("" if nothing): what a copy
// made without reading its source (CopyUnread) cannot carry, and what
// Compare, which judges bytes and headers, does not look at. A server that
// omits the STANDARD class compares equal to one that names it.
func ClassDiffers(src, dst Info) string {
	switch {
	case storageClass(src) != storageClass(dst):
		return fmt.Sprintf("storage class %s, source has %s", storageClass(dst), storageClass(src))
	case isKMS(src) != isKMS(dst) || (isKMS(src) && src.KMSKeyID != dst.KMSKeyID):
		return fmt.Sprintf("encryption %s %s, source has %s %s", dst.SSE, dst.KMSKeyID, src.SSE, src.KMSKeyID)
	}
	return ""
}
