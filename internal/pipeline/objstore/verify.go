package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

const defaultAbortTimeout = 30 * time.Second

// preferredAlgorithms orders the checksums tried when comparing two objects.
var preferredAlgorithms = []types.ChecksumAlgorithm{
	types.ChecksumAlgorithmCrc64nvme,
	types.ChecksumAlgorithmCrc32c,
	types.ChecksumAlgorithmCrc32,
	types.ChecksumAlgorithmSha256,
	types.ChecksumAlgorithmSha1,
}

// fullObject reports whether i's checksums cover the whole object (rather than
// being a checksum of part checksums, which only matches an identical part
// layout).
func fullObject(i Info) bool {
	return i.ChecksumType == types.ChecksumTypeFullObject || (i.ChecksumType == "" && !i.Multipart())
}

// Verdict is the outcome of comparing a copy with its source from their HEADs.
type Verdict struct {
	// Equal is true when the HEADs prove the objects equal.
	Equal bool
	// NeedBytes is true when the HEADs can neither prove nor disprove equality
	// of the bytes; only reading both objects can.
	NeedBytes bool
	// Method names what decided: "checksum:CRC64NVME", "etag", or "bytes".
	Method string
	// Algorithm and Checksum are the copy's, for the ledger.
	Algorithm types.ChecksumAlgorithm
	Checksum  string
	// Reason says why the objects differ (or why bytes are needed).
	Reason string
}

// Compare decides from two HEADs whether dst is a faithful copy of src.
//
// Size, content type and user metadata must match. Then, in order: a full-object
// checksum both carry decides; two single-part, non-KMS ETags (MD5s) decide;
// anything else needs the bytes. An ETag is not a checksum of a multipart or
// SSE-KMS object, and a multipart copy gets a new ETag, so those never decide.
// A checksum that differs after a multipart copy also needs the bytes, because
// some S3-compatible servers report wrong part checksums on UploadPartCopy.
func Compare(src, dst Info) Verdict {
	if src.Size != dst.Size {
		return Verdict{Reason: fmt.Sprintf("size %d, source has %d", dst.Size, src.Size)}
	}
	if why := headersDiffer(src, dst); why != "" {
		return Verdict{Reason: why}
	}
	if !maps.Equal(nonNil(src.Metadata), nonNil(dst.Metadata)) {
		return Verdict{Reason: fmt.Sprintf("user metadata %v, source has %v", dst.Metadata, src.Metadata)}
	}
	if fullObject(src) && fullObject(dst) {
		for _, alg := range preferredAlgorithms {
			a, okA := src.Checksums[alg]
			b, okB := dst.Checksums[alg]
			if !okA || !okB {
				continue
			}
			if a == b {
				return Verdict{Equal: true, Method: "checksum:" + string(alg), Algorithm: alg, Checksum: b}
			}
			if src.Multipart() || dst.Multipart() {
				return Verdict{NeedBytes: true, Reason: fmt.Sprintf("%s checksum %s differs from the source's %s after a multipart copy", alg, b, a)}
			}
			return Verdict{Reason: fmt.Sprintf("%s checksum %s, source has %s", alg, b, a)}
		}
	}
	alg, sum := anyChecksum(dst)
	if !src.Multipart() && !dst.Multipart() && !isKMS(src) && !isKMS(dst) {
		if src.ETag == dst.ETag {
			return Verdict{Equal: true, Method: "etag", Algorithm: alg, Checksum: sum}
		}
		return Verdict{Reason: fmt.Sprintf("ETag %s, source has %s", dst.ETag, src.ETag)}
	}
	return Verdict{NeedBytes: true, Algorithm: alg, Checksum: sum, Reason: "no checksum or ETag both objects share"}
}

// headersDiffer names the first content header in which dst differs from src
// ("" if none): everything S3 keeps with an object must travel with its copy.
func headersDiffer(src, dst Info) string {
	for _, h := range []struct{ name, src, dst string }{
		{"content type", src.ContentType, dst.ContentType},
		{"Cache-Control", src.CacheControl, dst.CacheControl},
		{"Content-Disposition", src.ContentDisposition, dst.ContentDisposition},
		{"Content-Encoding", src.ContentEncoding, dst.ContentEncoding},
		{"Content-Language", src.ContentLanguage, dst.ContentLanguage},
		{"Expires", httpDate(src.Expires), httpDate(dst.Expires)},
		{"website redirect location", src.WebsiteRedirectLocation, dst.WebsiteRedirectLocation},
	} {
		if h.src != h.dst {
			return fmt.Sprintf("%s %q, source has %q", h.name, h.dst, h.src)
		}
	}
	return ""
}

// httpDate normalises an Expires value so that two spellings of one date
// compare equal; anything that is not an HTTP date compares as it is.
func httpDate(v string) string {
	if t, err := http.ParseTime(v); err == nil {
		return t.UTC().Format(http.TimeFormat)
	}
	return v
}

func anyChecksum(i Info) (types.ChecksumAlgorithm, string) {
	for _, alg := range preferredAlgorithms {
		if v, ok := i.Checksums[alg]; ok {
			return alg, v
		}
	}
	return "", ""
}

func isKMS(i Info) bool {
	return i.SSE == types.ServerSideEncryptionAwsKms || i.SSE == types.ServerSideEncryptionAwsKmsDsse
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// Verify compares dst with src: from their HEADs when that decides, otherwise by
// reading both. It returns the verdict (Equal false with a Reason on mismatch).
func (s *Store) Verify(ctx context.Context, src, dst Info) (Verdict, error) {
	v := Compare(src, dst)
	if !v.NeedBytes {
		return v, nil
	}
	same, err := s.SameBytes(ctx, src, dst)
	if errors.Is(err, ErrStoredChecksum) {
		alg, sum := anyChecksum(dst)
		return Verdict{Reason: err.Error(), Algorithm: alg, Checksum: sum}, nil
	}
	if err != nil {
		return Verdict{}, err
	}
	alg, sum := anyChecksum(dst)
	if !same {
		return Verdict{Reason: "bytes differ", Algorithm: alg, Checksum: sum}, nil
	}
	return Verdict{Equal: true, Method: "bytes", Algorithm: alg, Checksum: sum}, nil
}

const compareBuf = 1 << 20

// ErrStoredChecksum is returned when an object's bytes do not match the
// checksum stored with it: the SDK checks that while reading, and a copy like
// that would be refused by every client that validates checksums.
var ErrStoredChecksum = errors.New("the object's bytes do not match its stored checksum")

// sdkChecksumError names the type of the error the SDK's response-checksum
// validation returns from a body whose bytes do not match the checksum the
// response carried: validationError in service/internal/checksum. The SDK does
// not export it, so it is recognised by its type's package and name (not by its
// message). TestSameBytesTellsAStoredChecksumMismatch has the SDK this module
// builds with produce it, so an SDK that moves or renames it fails that test
// rather than the verification.
var sdkChecksumError = struct{ pkg, name string }{"github.com/aws/aws-sdk-go-v2/service/internal/checksum", "validationError"}

// isChecksumMismatch reports whether err is, or wraps, the SDK's
// response-checksum validation error.
func isChecksumMismatch(err error) bool {
	return inChain(err, func(e error) bool {
		t := reflect.TypeOf(e)
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		return t.PkgPath() == sdkChecksumError.pkg && t.Name() == sdkChecksumError.name
	})
}

// inChain reports whether match holds for err or any error it wraps, walking
// the tree errors.Is walks.
func inChain(err error, match func(error) bool) bool {
	if err == nil {
		return false
	}
	if match(err) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return inChain(u.Unwrap(), match)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if inChain(e, match) {
				return true
			}
		}
	}
	return false
}

// SameBytes reads a and b side by side, each pinned to the ETag its HEAD saw,
// and reports whether their bytes are identical. Memory use is two 1 MiB buffers
// whatever the object size.
func (s *Store) SameBytes(ctx context.Context, a, b Info) (bool, error) {
	if a.Size != b.Size {
		return false, nil
	}
	ra, err := s.open(ctx, a)
	if err != nil {
		return false, err
	}
	defer ra.Close()
	rb, err := s.open(ctx, b)
	if err != nil {
		return false, err
	}
	defer rb.Close()
	bufA, bufB := make([]byte, compareBuf), make([]byte, compareBuf)
	for {
		na, errA := io.ReadFull(ra, bufA)
		nb, errB := io.ReadFull(rb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		endA := errA == io.EOF || errA == io.ErrUnexpectedEOF
		endB := errB == io.EOF || errB == io.ErrUnexpectedEOF
		for _, e := range []struct {
			err  error
			end  bool
			info Info
		}{{errA, endA, a}, {errB, endB, b}} {
			if e.err != nil && !e.end {
				if isChecksumMismatch(e.err) {
					return false, fmt.Errorf("read s3://%s/%s: %w: %v", s.bucket, e.info.Key, ErrStoredChecksum, e.err)
				}
				return false, fmt.Errorf("read s3://%s/%s: %w", s.bucket, e.info.Key, e.err)
			}
		}
		if endA || endB {
			return endA == endB, nil
		}
	}
}

func (s *Store) open(ctx context.Context, i Info) (io.ReadCloser, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(i.Key), IfMatch: aws.String(i.ETag)})
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", s.bucket, i.Key, classify(err))
	}
	return out.Body, nil
}

// Record is what the ledger remembers of a verified copy.
type Record struct {
	Size      int64
	ETag      string
	Algorithm string
	Checksum  string
}

// MatchesRecord reports whether an object is still the copy the ledger
// recorded: same size, and the recorded checksum when the object carries that
// algorithm, else the recorded ETag. The reason says what differs.
func MatchesRecord(i Info, r Record) (bool, string) {
	if i.Size != r.Size {
		return false, fmt.Sprintf("size %d, the ledger recorded %d", i.Size, r.Size)
	}
	if got, ok := i.Checksums[types.ChecksumAlgorithm(r.Algorithm)]; ok && r.Checksum != "" {
		if got != r.Checksum {
			return false, fmt.Sprintf("%s checksum %s, the ledger recorded %s", r.Algorithm, got, r.Checksum)
		}
		return true, ""
	}
	if r.ETag != "" && i.ETag != r.ETag {
		return false, fmt.Sprintf("ETag %s, the ledger recorded %s", i.ETag, r.ETag)
	}
	return true, ""
}

// FromResponse is what a single-part copy of src is, as its own response
// tells it: the bytes, size, content type, user metadata and content headers
// of src (CopyObject with MetadataDirective COPY keeps them, on servers where
// the fleet's probe found it does: Capabilities.CopyKeepsHeaders), with the
// ETag and checksums the write returned. Compare(src, FromResponse(src, res))
// then decides from the response alone: by the checksum the copy was asked to
// compute, or by two single-part, non-KMS ETags (MD5s of the bytes). A
// multipart copy's response cannot prove the bytes this way.
func FromResponse(src Info, res CopyResult) Info {
	dst := src
	dst.ETag = res.ETag
	dst.Checksums = map[types.ChecksumAlgorithm]string{}
	for k, v := range res.Checksums {
		dst.Checksums[k] = v
	}
	dst.ChecksumType = res.ChecksumType
	if dst.ChecksumType == "" && len(dst.Checksums) > 0 && !res.Multipart {
		dst.ChecksumType = types.ChecksumTypeFullObject
	}
	return dst
}
