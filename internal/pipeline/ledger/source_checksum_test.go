package ledger_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// A move records the checksum algorithm its source carried when the copy's
// is another (F13 in docs/soak-findings.md: a multipart copy of a CRC32C
// source carries CRC64NVME, and a rollback that copies the legacy object back
// must ask for CRC32C): the source's algorithm reads back as written, the
// copy's when it is the same, and none when the source carried none.
func TestAMoveRecordsItsSourcesChecksumAlgorithm(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	id, owner := "2d8e3f72-0a5b-4b4f-83e2-6f708192a3b4", "8a2d3c0f-4e5b-4d6c-9f80-1b2c3d4e5f60"
	env.InsertPhoto(t, id, &owner, "uploaded/s.jpg", nil, nil)
	prefix := "users/" + owner + "/raw/" + id + "/"
	objs := []ledger.ObjectMove{
		// A multipart copy of a CRC32C source.
		{Kind: "original", OldKey: "uploaded/s.jpg", NewKey: prefix + "original.jpg", Size: 7 << 20, SourceETag: `"a"`, ETag: `"b-2"`,
			ChecksumAlgorithm: "CRC64NVME", Checksum: "x", SourceChecksumAlgorithm: "CRC32C"},
		// A single-part copy that asked for its source's own algorithm.
		{Kind: "metadata", OldKey: "uploaded/s.json", NewKey: prefix + "metadata.json", Size: 10, SourceETag: `"c"`, ETag: `"c"`,
			ChecksumAlgorithm: "CRC32", Checksum: "y", SourceChecksumAlgorithm: "CRC32"},
		// A source without a checksum, whose copy got the default.
		{Kind: "animation", OldKey: "uploaded/s.mov", NewKey: prefix + "animation.mov", Size: 10, SourceETag: `"d"`, ETag: `"d"`,
			ChecksumAlgorithm: "CRC64NVME", Checksum: "z"},
	}
	out, err := env.Store.PhotoMoveSwap(ctx, ledger.SwapInput{
		PhotoID: id, RunID: "r", OwnerID: owner, JobID: "s",
		Old: ledger.Keys{Original: "uploaded/s.jpg"}, New: ledger.Keys{Original: prefix + "original.jpg"},
		Objects: objs,
	})
	require.NoError(t, err)
	require.Equal(t, ledger.Swapped, out)
	got, err := env.Store.ObjectMoveListOfPhoto(ctx, id)
	require.NoError(t, err)
	byKey := map[string]ledger.ObjectMove{}
	for _, o := range got {
		byKey[o.NewKey] = o
	}
	for _, o := range objs {
		require.Contains(t, byKey, o.NewKey)
		require.Equal(t, o.SourceChecksumAlgorithm, byKey[o.NewKey].SourceChecksumAlgorithm, "the source's algorithm of %s", o.NewKey)
		require.Equal(t, o.ChecksumAlgorithm, byKey[o.NewKey].ChecksumAlgorithm, "the copy's algorithm of %s", o.NewKey)
	}
}
