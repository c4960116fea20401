package objstore

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"
)

func info(etag string, size int64, sums map[types.ChecksumAlgorithm]string, ct types.ChecksumType) Info {
	return Info{ETag: etag, Size: size, ContentType: "image/jpeg", Checksums: sums, ChecksumType: ct, Metadata: map[string]string{"a": "b"}}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	crc := func(v string) map[types.ChecksumAlgorithm]string {
		return map[types.ChecksumAlgorithm]string{types.ChecksumAlgorithmCrc64nvme: v}
	}
	crc32 := map[types.ChecksumAlgorithm]string{types.ChecksumAlgorithmCrc32: "c32"}
	full := types.ChecksumTypeFullObject
	cases := []struct {
		name      string
		src, dst  Info
		equal     bool
		needBytes bool
		method    string
	}{
		{"same checksum", info(`"a"`, 5, crc("x"), full), info(`"a"`, 5, crc("x"), full), true, false, "checksum:CRC64NVME"},
		{"multipart copy, same checksum", info(`"a"`, 5, crc("x"), full), info(`"b-3"`, 5, crc("x"), full), true, false, "checksum:CRC64NVME"},
		{"different checksum, single part", info(`"a"`, 5, crc("x"), full), info(`"a"`, 5, crc("y"), full), false, false, ""},
		{"different checksum after multipart copy", info(`"a"`, 5, crc("x"), full), info(`"b-3"`, 5, crc("y"), full), false, true, ""},
		{"no common checksum, single part", info(`"a"`, 5, crc32, full), info(`"a"`, 5, crc("y"), full), true, false, "etag"},
		{"no common checksum, multipart", info(`"a"`, 5, crc32, full), info(`"b-2"`, 5, crc("y"), full), false, true, ""},
		{"composite checksums never compare", info(`"a-2"`, 5, crc("x-2"), types.ChecksumTypeComposite), info(`"b-2"`, 5, crc("x-2"), types.ChecksumTypeComposite), false, true, ""},
		{"size differs", info(`"a"`, 5, crc("x"), full), info(`"a"`, 6, crc("x"), full), false, false, ""},
		{"etag differs", info(`"a"`, 5, nil, ""), info(`"b"`, 5, nil, ""), false, false, ""},
	}
	for _, c := range cases {
		v := Compare(c.src, c.dst)
		require.Equal(t, c.equal, v.Equal, c.name)
		require.Equal(t, c.needBytes, v.NeedBytes, c.name)
		require.Equal(t, c.method, v.Method, c.name)
		if !v.Equal {
			require.NotEmpty(t, v.Reason, c.name)
		}
	}
	// Metadata and content type are part of a faithful copy.
	a, b := info(`"a"`, 5, crc("x"), full), info(`"a"`, 5, crc("x"), full)
	b.Metadata = map[string]string{"a": "c"}
	require.False(t, Compare(a, b).Equal)
	b = info(`"a"`, 5, crc("x"), full)
	b.ContentType = "image/png"
	require.False(t, Compare(a, b).Equal)
	// KMS ETags are not MD5s.
	a, b = info(`"a"`, 5, nil, ""), info(`"a"`, 5, nil, "")
	a.SSE = types.ServerSideEncryptionAwsKms
	require.True(t, Compare(a, b).NeedBytes)
}

func TestCopySourceEncoding(t *testing.T) {
	t.Parallel()
	require.Equal(t, "bucket/uploaded/job-1_a.b~c.jpg", copySource("bucket", "uploaded/job-1_a.b~c.jpg"))
	require.Equal(t, "bucket/a%20b%2Bc%25d/%C3%A9.jpg", copySource("bucket", "a b+c%d/é.jpg"))
}
