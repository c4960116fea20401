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

// The source's checksum algorithm survives compaction (F13): left out when
// it is the copy's, kept when it is another or none.
func TestAuditPackingKeepsTheSourcesChecksumAlgorithm(t *testing.T) {
	const owner, photo = "7f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f", "0c7e2d61-9c4f-4a3e-b2d1-5e6f7a8b9c0d"
	for _, c := range []struct{ copyAlg, srcAlg string }{{"CRC64NVME", "CRC32C"}, {"CRC32", "CRC32"}, {"CRC64NVME", ""}, {"", ""}} {
		o := ObjectMove{Kind: "original", OldKey: "uploaded/k.jpg", NewKey: "elsewhere/k.jpg", Size: 1, SourceETag: `"a"`, ETag: `"a"`,
			ChecksumAlgorithm: c.copyAlg, SourceChecksumAlgorithm: c.srcAlg}
		j := o.pack(owner, photo)
		require.Equal(t, c.copyAlg == c.srcAlg, j.SourceChecksumAlgorithm == nil, "left out only when it is the copy's: %+v", c)
		require.Equal(t, c.srcAlg, j.unpack(owner, photo).SourceChecksumAlgorithm, "%+v", c)
	}
}
