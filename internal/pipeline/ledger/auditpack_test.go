package ledger

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// samplePhotoMoves is a photo's three moves as compaction packs them.
func samplePhotoMoves() []auditJSON {
	t := int64(1765000000000000)
	var objs []auditJSON
	for i, k := range []string{"original", "thumbnail", "metadata"} {
		tt := t + int64(i)
		objs = append(objs, auditJSON{Kind: k, OldKey: "uploaded/9e7d0000-0000-4000-8000-000000017801.jpg", Size: 2345678,
			SourceETag: "a9963f94182761d3ca709ff01d97834e", ChecksumAlgorithm: "CRC32C", Checksum: "AAAAAAAA", VerifyMethod: "=",
			CopiedAt: &tt, CommittedAt: &tt, VerifiedIsCommitted: true, DeletedAt: &tt})
	}
	return objs
}

// Compaction packs one audit row per photo: at 10^9 photos a pack that
// allocates a new compressor (about 800 KiB of tables, 4.5 ms of CPU on this
// machine's busy cores) made `ledger compact` CPU-bound for days (found by the
// scale bench: 4.8 CPU-minutes per 10^6 photos). Packing and unpacking must
// reuse their compressors.
func TestAuditPackingReusesItsCompressors(t *testing.T) {
	objs := samplePhotoMoves()
	packed, err := packAudit(objs)
	require.NoError(t, err)
	back, err := unpackAudit(packed)
	require.NoError(t, err)
	require.Equal(t, objs, back, "what is packed unpacks the same")

	const n = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		b, err := packAudit(objs)
		require.NoError(t, err)
		_, err = unpackAudit(b)
		require.NoError(t, err)
	}
	runtime.ReadMemStats(&after)
	perPhoto := (after.TotalAlloc - before.TotalAlloc) / n
	// A new writer per photo is at least ~800 KiB; pooled, a few KiB. The
	// race detector makes sync.Pool drop a share of what is put back (about
	// 220 KiB per photo on average here), hence the bound in between.
	require.Less(t, perPhoto, uint64(400<<10), "bytes allocated to pack and unpack one photo's audit row (a fresh flate writer is ~800 KiB)")
}
