package plan

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWorkerRequestsPerPhoto pins the estimate's HEAD and CopyObject counts
// for one photo to those worker's TestAMoveCostsTheRequestsItShould counts
// through the proxy (docs/performance.md "S3 requests per object"): five
// objects with metadata, or four without, on S3 (conditional copies) and
// where the destination is read first (versitygw, --destination-head), copy
// first and careful. The case of a multipart object on the copy-first path
// (above CopyObject's 5 GiB, which no test stack holds) follows the code:
// its copy made first is refused, then the careful path.
func TestWorkerRequestsPerPhoto(t *testing.T) {
	const gib5 = 5 << 30
	for _, tc := range []struct {
		name                   string
		o                      Options
		copies, multipart, met int64
		heads, copyObjects     int64
	}{
		{"copy first, S3, metadata", Options{MultipartThreshold: gib5}, 5, 0, 1, 5, 5},
		{"copy first, versitygw, metadata", Options{MultipartThreshold: gib5, DestinationHead: true}, 5, 0, 1, 10, 5},
		// The HEAD that finds no metadata, not a copy answering NoSuchKey
		// (and where destinations are read first, no HEAD of the
		// destination of a metadata that does not exist).
		{"copy first, S3, no metadata", Options{MultipartThreshold: gib5}, 4, 0, 0, 5, 4},
		{"copy first, versitygw, no metadata", Options{MultipartThreshold: gib5, DestinationHead: true}, 4, 0, 0, 9, 4},
		{"careful, S3, metadata", Options{MultipartThreshold: gib5, NoCopyFirst: true}, 5, 0, 1, 10, 5},
		{"careful, S3, no metadata", Options{MultipartThreshold: gib5, NoCopyFirst: true}, 4, 0, 0, 9, 4},
		{"careful, versitygw, metadata", Options{MultipartThreshold: gib5, NoCopyFirst: true, DestinationHead: true}, 5, 0, 1, 15, 5},
		{"careful, S3, no recheck", Options{MultipartThreshold: gib5, NoCopyFirst: true, NoSourceRecheck: true}, 5, 0, 1, 5, 5},
		{"copy first, no recheck (the read after the copy stays)", Options{MultipartThreshold: gib5, NoSourceRecheck: true}, 5, 0, 1, 5, 5},
		// 3 copied first + the metadata's HEAD + (source, read back,
		// recheck) of the multipart one; its refused copy made first.
		{"copy first, S3, metadata, one multipart", Options{MultipartThreshold: gib5}, 5, 1, 1, 4 + 3, 5},
		{"copy first, versitygw, metadata, one multipart", Options{MultipartThreshold: gib5, DestinationHead: true}, 5, 1, 1, 8 + 5, 5},
		{"threshold below 5 GiB: careful", Options{MultipartThreshold: 1 << 30}, 5, 1, 1, 11, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := workerRequests(tc.o, 1, tc.copies, tc.multipart, tc.met)
			require.Equal(t, tc.heads, got.heads, "HeadObject")
			require.Equal(t, tc.copyObjects, got.copies, "CopyObject")
		})
	}
}

// TestTheDurationCountsOnlyTheSlotsTheCalibratingRunKeptBusy pins the
// duration's arithmetic: a fleet of workers × concurrency slots migrates at
// slots × occupancy ÷ latency, the occupancy read from the calibrating run's
// ledger. Without it (the formula before make staged-bench measured it) a
// fleet whose slots are busy 80% of the time is promised 25% more than it
// does. A scratch copy measures no occupancy and keeps every slot busy.
func TestTheDurationCountsOnlyTheSlotsTheCalibratingRunKeptBusy(t *testing.T) {
	o := Options{Workers: 2, Concurrency: 16, S3WriteRate: 3500}
	plan := func(cal Calibration) Estimate {
		r := &Report{}
		r.Photos.ToMigrate, r.Copies.Objects = 2560, 2560*3
		r.estimate(o, cal)
		return r.Estimate
	}
	e := plan(Calibration{Source: CalibratedFromLedger, P50: 1, P90: 2, Occupancy: 0.8, PeakInFlight: 32})
	require.InDelta(t, 32*0.8/1.0, e.PhotosPerSecondP50, 1e-9, "2 × 16 slots, 80% busy, 1s a photo")
	require.InDelta(t, 32*0.8/2.0, e.PhotosPerSecondP90, 1e-9)
	require.InDelta(t, 2560/25.6, e.SecondsP50, 1e-9)
	require.InDelta(t, 2560/12.8, e.SecondsP90, 1e-9)

	e = plan(Calibration{Source: CalibratedByScratchCopy, P50: 1, P90: 2})
	require.InDelta(t, 32.0, e.PhotosPerSecondP50, 1e-9, "no occupancy measured: every slot busy")

	o.S3WriteRate = 30 // 10 photos/s at 3 copies a photo
	e = plan(Calibration{Source: CalibratedFromLedger, P50: 1, P90: 2, Occupancy: 0.8})
	require.InDelta(t, 10.0, e.PhotosPerSecondP50, 1e-9, "the S3 ceiling still caps the rate")
}
