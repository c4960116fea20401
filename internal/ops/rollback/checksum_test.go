package rollback_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Found by the soak (seed 880801, -soak.list-photos -soak.archived-ops,
// copies_keep_headers; docs/soak.md): a legacy original with a CRC32C
// checksum, above the workers' multipart threshold, was copied in parts (the
// copy carries the multipart algorithm, not CRC32C), cleanup deleted the
// legacy object, and a rollback copied it back from that copy: the restored
// legacy object carried CRC64NVME and no CRC32C, and the photo's next
// migration copied that. A rollback must give the legacy key back the
// object it had, its checksum algorithm included.
func TestRollbackAfterCleanupRestoresTheLegacyChecksumAlgorithm(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{Objects: objstore.Options{MultipartThreshold: 5 << 20, PartSize: 5 << 20}})
	ctx := context.Background()
	opts := seed.Options{Photos: 1, Seed: 31, OwnerlessRate: 0.0001}
	env.Seed(t, opts)
	p := seed.Generate(opts)[0]
	body := bytes.Repeat([]byte("keymigrate"), (6<<20)/10)
	_, err := env.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(env.Objects.Bucket()), Key: aws.String(p.Original),
		Body: bytes.NewReader(body), ContentType: aws.String("image/jpeg"), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	require.NoError(t, err)
	before, err := env.Objects.Head(ctx, p.Original)
	require.NoError(t, err)
	require.Contains(t, before.Checksums, types.ChecksumAlgorithmCrc32c)

	env.Migrate(t)
	_, err = cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)
	_, err = env.Objects.Head(ctx, p.Original)
	require.Error(t, err, "cleanup deleted the legacy original")

	rep, err := rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: p.ID, DeleteNew: true})
	require.NoError(t, err)
	require.Empty(t, rep.Refused)
	require.Equal(t, 1, rep.RolledBack)
	after, err := env.Objects.Head(ctx, p.Original)
	require.NoError(t, err, "copied back")
	require.Equal(t, before.Size, after.Size)
	require.Equal(t, before.Checksums[types.ChecksumAlgorithmCrc32c], after.Checksums[types.ChecksumAlgorithmCrc32c],
		"the restored legacy object carries the CRC32C it had (it has %v)", after.Checksums)
}
