package objstore

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"
)

// TestACopyMadeFirstStandsOnlyForWhatItCouldCarry: a copy made before its
// source was read (CopyUnread) is accepted only when the read of the source
// made after it proves the bytes (checksum, or two single-part MD5 ETags) and
// the source has nothing such a copy cannot set; anything else is refused, and
// the worker copies it again pinned to a HEAD.
func TestACopyMadeFirstStandsOnlyForWhatItCouldCarry(t *testing.T) {
	t.Parallel()
	s := New(nil, "b", Options{MultipartThreshold: 100})
	keeps := Capabilities{CopyKeepsHeaders: true}
	crc := func(v string) map[types.ChecksumAlgorithm]string {
		return map[types.ChecksumAlgorithm]string{types.ChecksumAlgorithmCrc64nvme: v}
	}
	src := info(`"e1"`, 10, crc("c1"), types.ChecksumTypeFullObject)
	res := CopyResult{ETag: `"e1"`, Checksums: crc("c1"), ChecksumType: types.ChecksumTypeFullObject}

	s.SetCapabilities(Capabilities{})
	require.Contains(t, s.CopyStandsFor(src, res), "keep every header", "no proof where a copy may drop headers")
	s.SetCapabilities(keeps)
	require.Empty(t, s.CopyStandsFor(src, res), "same checksum and ETag: proven")

	noSum := info(`"e1"`, 10, nil, "")
	require.Empty(t, s.CopyStandsFor(noSum, CopyResult{ETag: `"e1"`}), "two single-part MD5 ETags prove it")
	require.Contains(t, s.CopyStandsFor(noSum, CopyResult{ETag: `"e2"`}), "ETag", "the source changed after the copy")
	require.Contains(t, s.CopyStandsFor(src, CopyResult{ETag: `"e2"`, Checksums: crc("c2")}), "checksum", "the source changed after the copy")
	parts := info(`"e1-2"`, 10, nil, "")
	require.NotEmpty(t, s.CopyStandsFor(parts, CopyResult{ETag: `"e3"`}), "a multipart source's ETag proves nothing")

	for why, mut := range map[string]func(*Info){
		"storage class":    func(i *Info) { i.StorageClass = types.StorageClassStandardIa },
		"KMS":              func(i *Info) { i.SSE = types.ServerSideEncryptionAwsKms },
		"website redirect": func(i *Info) { i.WebsiteRedirectLocation = "/x" },
		"Expires":          func(i *Info) { i.Expires = "Tue, 04 Mar 2031 05:06:07 GMT" },
		"multipart thresh": func(i *Info) { i.Size = 101 },
	} {
		i := src
		mut(&i)
		require.NotEmpty(t, s.CopyStandsFor(i, res), "%s: a copy made without reading the source cannot carry it", why)
	}
	require.NotEmpty(t, s.CopyStandsFor(src, CopyResult{ETag: `"e1"`, Checksums: crc("c1"), Multipart: true}), "a multipart copy's response")

	// The copy made first asks for the default algorithm: a source with
	// another one (CRC32 here) would lose it, though the ETags agree. The
	// careful path's copy asks for the source's own; S3's CopyObject keeps
	// it unless told otherwise. (Found by the soak with copy-first workers.)
	crc32 := info(`"e1"`, 10, map[types.ChecksumAlgorithm]string{types.ChecksumAlgorithmCrc32: "c32"}, types.ChecksumTypeFullObject)
	require.Contains(t, s.CopyStandsFor(crc32, res), "CRC32", "a copy that carries none of the source's checksums")
	both := CopyResult{ETag: `"e1"`, Checksums: map[types.ChecksumAlgorithm]string{types.ChecksumAlgorithmCrc64nvme: "c1", types.ChecksumAlgorithmCrc32: "c32"}, ChecksumType: types.ChecksumTypeFullObject}
	require.Empty(t, s.CopyStandsFor(crc32, both), "one that carries it, with the same value")
	require.Empty(t, s.CopyStandsFor(noSum, res), "a source without a checksum: the copy's default one is new, not lost")

	require.False(t, s.CopiesUnread(), "below 5 GiB a source one CopyObject copies could be one Copy copies in parts")
	require.True(t, New(nil, "b", Options{}).CopiesUnread(), "the default threshold is CopyObject's limit")
}

// TestClassDiffers: what Compare does not judge and a copy made first cannot
// carry, seen in a HEAD of the copy.
func TestClassDiffers(t *testing.T) {
	t.Parallel()
	std := Info{}
	require.Empty(t, ClassDiffers(std, Info{StorageClass: types.StorageClassStandard}), "S3 omits STANDARD; other servers name it")
	require.Contains(t, ClassDiffers(Info{StorageClass: types.StorageClassStandardIa}, std), "storage class")
	kms := Info{SSE: types.ServerSideEncryptionAwsKms, KMSKeyID: "k1"}
	require.Contains(t, ClassDiffers(kms, Info{SSE: types.ServerSideEncryptionAes256}), "encryption")
	require.Contains(t, ClassDiffers(kms, Info{SSE: types.ServerSideEncryptionAwsKms, KMSKeyID: "k2"}), "encryption")
	require.Empty(t, ClassDiffers(kms, kms))
	require.Empty(t, ClassDiffers(Info{SSE: types.ServerSideEncryptionAes256}, std), "SSE-S3 and none: the bucket's default either way")
}
