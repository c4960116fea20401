package objstore_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// A rollback copies a legacy object back from its new copy (F13 in
// docs/soak-findings.md): above the multipart threshold that copy carries
// the multipart checksum (CRC64NVME), not the CRC32C the legacy object had.
// CopyBack asks for the legacy object's algorithm and gets it: in one
// CopyObject, whatever the threshold, because a multipart copy that names an
// algorithm is stored with a wrong checksum on versitygw v1.8.0 (which the
// read below, validating the checksum, would refuse). Without an algorithm
// it asks for what Copy would.
func TestCopyBackRestoresTheLegacyChecksumAlgorithm(t *testing.T) {
	t.Parallel()
	client, bucket := testenv.NewBucket(t)
	ctx := context.Background()
	st := objstore.New(client, bucket, objstore.Options{MultipartThreshold: 1 << 20, PartSize: 5 << 20})
	body := bytes.Repeat([]byte("keymigrate"), (6<<20)/10)
	_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("legacy"), Body: bytes.NewReader(body),
		ContentType: aws.String("image/jpeg"), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	require.NoError(t, err)
	legacy, err := st.Head(ctx, "legacy")
	require.NoError(t, err)
	require.Equal(t, types.ChecksumAlgorithmCrc32c, legacy.SourceChecksumAlgorithm())
	res, err := st.Copy(ctx, legacy, "new", "")
	require.NoError(t, err)
	require.True(t, res.Multipart)
	moved, err := st.Head(ctx, "new")
	require.NoError(t, err)
	require.NotContains(t, moved.Checksums, types.ChecksumAlgorithmCrc32c, "the premise: the multipart copy does not carry CRC32C")

	for _, c := range []struct {
		alg  types.ChecksumAlgorithm
		want map[types.ChecksumAlgorithm]string
	}{
		{types.ChecksumAlgorithmCrc32c, legacy.Checksums},
		// None recorded: what a single-part Copy of the source asks for,
		// its own full-object algorithm (CRC64NVME on versitygw), or the
		// default where it has none (MinIO's multipart copies).
		{"", moved.Checksums},
	} {
		key := "restored-" + string(c.alg)
		res, err := st.CopyBack(ctx, moved, key, c.alg)
		require.NoError(t, err, c.alg)
		require.False(t, res.Multipart, "%q: one CopyObject below 5 GiB", c.alg)
		restored, err := st.Head(ctx, key)
		require.NoError(t, err)
		if c.alg == "" && moved.SourceChecksumAlgorithm() == "" {
			// MinIO keeps no checksum on a multipart copy: Copy would ask
			// for the default algorithm, and so does CopyBack.
			require.Contains(t, restored.Checksums, types.ChecksumAlgorithmCrc64nvme, "the restored object's checksums")
		} else {
			require.Equal(t, c.want, restored.Checksums, "%q: the restored object's checksums", c.alg)
		}
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
		require.NoError(t, err)
		got, err := io.ReadAll(out.Body)
		_ = out.Body.Close()
		require.NoError(t, err, "%q: the stored checksum is the bytes' (the read validates it)", c.alg)
		require.Equal(t, body, got)
		v, err := st.Verify(ctx, moved, restored)
		require.NoError(t, err)
		require.True(t, v.Equal, "%q: %s", c.alg, v.Reason)
	}
}

// A multipart upload's composite checksum (of its parts' checksums) is no
// algorithm a copy can carry: only a full-object checksum counts.
func TestSourceChecksumAlgorithmIsAFullObjectOne(t *testing.T) {
	t.Parallel()
	require.Equal(t, types.ChecksumAlgorithmCrc32, objstore.Info{ETag: `"a"`, Checksums: map[types.ChecksumAlgorithm]string{types.ChecksumAlgorithmCrc32: "x"}}.SourceChecksumAlgorithm())
	require.Equal(t, types.ChecksumAlgorithmCrc32c, objstore.Info{ETag: `"a-2"`, ChecksumType: types.ChecksumTypeFullObject,
		Checksums: map[types.ChecksumAlgorithm]string{types.ChecksumAlgorithmCrc32c: "x"}}.SourceChecksumAlgorithm())
	require.Empty(t, objstore.Info{ETag: `"a-2"`, ChecksumType: types.ChecksumTypeComposite,
		Checksums: map[types.ChecksumAlgorithm]string{types.ChecksumAlgorithmCrc32: "x"}}.SourceChecksumAlgorithm())
	require.Empty(t, objstore.Info{ETag: `"a-2"`, Checksums: map[types.ChecksumAlgorithm]string{types.ChecksumAlgorithmSha256: "x"}}.SourceChecksumAlgorithm(),
		"a multipart object whose checksum type is not reported")
	require.Empty(t, objstore.Info{ETag: `"a"`}.SourceChecksumAlgorithm())
}
