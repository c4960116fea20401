package plan

import (
	"math"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// Estimate is what the migration will cost and how long it will take.
type Estimate struct {
	Prices Prices `json:"prices"`
	// Requests are the backfill's requests by operation (producer, workers),
	// Cleanup those of the cleanup after the grace period.
	Requests    []Request `json:"requests"`
	RequestCost float64   `json:"request_cost"`
	Cleanup     []Request `json:"cleanup_requests"`
	CleanupCost float64   `json:"cleanup_request_cost"`
	// PlanCost is what this plan's own listing cost.
	PlanCost float64 `json:"plan_listing_cost"`
	// StoragePerDay is the cost of holding the copies (both copies exist
	// from the copy until cleanup) for one day; StorageGrace for GraceDays.
	StoragePerDay float64 `json:"storage_cost_per_day"`
	GraceDays     float64 `json:"grace_days"`
	StorageGrace  float64 `json:"storage_cost_grace"`

	Calibration Calibration `json:"calibration"`
	Workers     int         `json:"workers"`
	Concurrency int         `json:"concurrency"`
	// PhotosPerSecond is the fleet's rate at the median (P50) and p90
	// latency, capped by S3's write rate per prefix (S3Ceiling).
	PhotosPerSecondP50 float64 `json:"photos_per_second_p50"`
	PhotosPerSecondP90 float64 `json:"photos_per_second_p90"`
	S3Ceiling          float64 `json:"s3_ceiling_photos_per_second"`
	// Seconds is the estimated duration at P50 and p90 (0 when unknown).
	SecondsP50 float64 `json:"seconds_p50"`
	SecondsP90 float64 `json:"seconds_p90"`
	Formula    string  `json:"formula"`
}

// Request is a number of requests of one operation and their cost.
type Request struct {
	Service   string  `json:"service"` // s3 or sqs
	Operation string  `json:"operation"`
	Class     string  `json:"class"` // put (PUT/COPY/POST/LIST), get (GET/HEAD), sqs
	Count     int64   `json:"count"`
	Cost      float64 `json:"cost"`
	Note      string  `json:"note,omitempty"`
}

// CalibrationSource says where a plan's per-photo latency comes from.
type CalibrationSource string

// The calibration sources.
const (
	// CalibratedFromLedger: photos a previous run migrated (Options.CalibrateRun).
	CalibratedFromLedger CalibrationSource = "ledger"
	// CalibratedByScratchCopy: copies of a sample to the scratch prefix
	// (Options.Calibrate).
	CalibratedByScratchCopy CalibrationSource = "scratch copy"
	// NotCalibrated: no latency is known; Calibration.Note says why.
	NotCalibrated CalibrationSource = "none"
)

// Calibration is where the per-photo latency comes from.
type Calibration struct {
	Source CalibrationSource `json:"source"`
	Run    string            `json:"run,omitempty"`
	Photos int64             `json:"photos"`
	P50    float64           `json:"p50_seconds"`
	P90    float64           `json:"p90_seconds"`
	// Occupancy is the share of its slots the calibrating run kept busy
	// (ledger.Latency.Occupancy: mean photos in flight ÷ the most at once);
	// the estimate's fleet runs at workers × concurrency × Occupancy photos
	// in flight. 0: not measured (a scratch copy), taken as 1.
	Occupancy    float64 `json:"occupancy,omitempty"`
	PeakInFlight int64   `json:"peak_in_flight,omitempty"`
	// Failed counts calibration photos whose copy failed; Deleted the scratch
	// objects removed afterwards.
	Failed  int64  `json:"failed,omitempty"`
	Deleted int64  `json:"scratch_deleted,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Formula explains the duration estimate (also in --help and the docs).
const Formula = `photos/s = min(workers × concurrency × occupancy ÷ latency, S3 write rate ÷ copies per photo); duration = photos to migrate ÷ photos/s. Latency is per photo (a worker's start on it to its swap), the median (p50) and the 90th percentile (p90); occupancy is the share of its slots the calibrating run kept busy (its mean photos in flight ÷ the most at once; 1 for a scratch copy).`

func (r *Report) estimate(o Options, cal Calibration) {
	e := &r.Estimate
	e.Prices, e.GraceDays, e.Workers, e.Concurrency, e.Formula, e.Calibration = o.Prices, o.GraceDays, o.Workers, o.Concurrency, Formula, cal
	photos := r.Photos.ToMigrate
	copies := r.Copies.Objects
	cost := func(class string, n int64) float64 {
		switch class {
		case "put":
			return float64(n) / 1000 * o.Prices.PutPer1000
		case "get":
			return float64(n) / 1000 * o.Prices.GetPer1000
		}
		return float64(n) / 1e6 * o.Prices.SQSPerMillion
	}
	add := func(dst *[]Request, total *float64, service, op, class string, n int64, note string) {
		if n == 0 {
			return
		}
		c := cost(class, n)
		*dst = append(*dst, Request{Service: service, Operation: op, Class: class, Count: n, Cost: c, Note: note})
		*total += c
	}
	// What the workers send, per photo and per object (worker/first.go,
	// worker/plan.go, worker/move.go; docs/performance.md "S3 requests per
	// object"), pinned to the proxy's count by
	// TestTheEstimateCountsTheRequestsTheWorkersMake.
	reqs := workerRequests(o, photos, copies, r.Copies.Multipart, r.Copies.ByKind[string(keylayout.KindMetadata)].Objects)
	add(&e.Requests, &e.RequestCost, "s3", "HeadObject", "get", reqs.heads, reqs.headNote)
	add(&e.Requests, &e.RequestCost, "s3", "ListObjectsV2", "put", photos, "per photo: its job's animations")
	add(&e.Requests, &e.RequestCost, "s3", "CopyObject", "put", reqs.copies, reqs.copyNote)
	add(&e.Requests, &e.RequestCost, "s3", "GetObjectTagging", "get", r.Copies.Multipart, "per multipart copy: the source's tags, which part copies do not carry")
	add(&e.Requests, &e.RequestCost, "s3", "CreateMultipartUpload", "put", r.Copies.Multipart, "")
	add(&e.Requests, &e.RequestCost, "s3", "UploadPartCopy", "put", r.Copies.Parts, "")
	add(&e.Requests, &e.RequestCost, "s3", "CompleteMultipartUpload", "put", r.Copies.Multipart, "")
	batches := int64(math.Ceil(float64(photos) / 10))
	add(&e.Requests, &e.RequestCost, "sqs", "SendMessageBatch", "sqs", batches, "10 messages of about 100 bytes per request (one 64 KiB chunk)")
	add(&e.Requests, &e.RequestCost, "sqs", "ReceiveMessage", "sqs", batches, "at best 10 per request; each empty long poll adds one")
	add(&e.Requests, &e.RequestCost, "sqs", "DeleteMessage", "sqs", photos, "")
	add(&e.Cleanup, &e.CleanupCost, "s3", "HeadObject", "get", 2*copies, "per legacy object: the new copy re-verified, the legacy object's ETag")
	add(&e.Cleanup, &e.CleanupCost, "s3", "DeleteObjects", "put", int64(math.Ceil(float64(copies)/1000)), "1,000 keys per request; counted at the POST price (DELETE itself is free)")
	e.PlanCost = cost("put", r.Listing.Requests)

	gib := float64(r.Copies.Bytes) / (1 << 30)
	e.StoragePerDay = gib * o.Prices.StorageGBMonth / 30
	e.StorageGrace = e.StoragePerDay * o.GraceDays

	if copies > 0 && photos > 0 {
		e.S3Ceiling = o.S3WriteRate / (float64(copies) / float64(photos))
	}
	rate := func(latency float64) float64 {
		if latency <= 0 {
			return 0
		}
		// A slot is not busy all the time: between one photo's swap and
		// the next one's start a worker deletes the message and receives
		// another, and a stage ramps up and drains; the calibrating run's
		// occupancy measures that (in make staged-bench it was about 0.8,
		// and leaving it out made the plan 30-40% optimistic).
		occ := cal.Occupancy
		if occ <= 0 || occ > 1 {
			occ = 1
		}
		v := float64(o.Workers*o.Concurrency) * occ / latency
		if e.S3Ceiling > 0 {
			v = math.Min(v, e.S3Ceiling)
		}
		return v
	}
	e.PhotosPerSecondP50, e.PhotosPerSecondP90 = rate(cal.P50), rate(cal.P90)
	if e.PhotosPerSecondP50 > 0 {
		e.SecondsP50 = float64(photos) / e.PhotosPerSecondP50
	}
	if e.PhotosPerSecondP90 > 0 {
		e.SecondsP90 = float64(photos) / e.PhotosPerSecondP90
	}
}

// maxCopyObject is the largest source one CopyObject copies (5 GiB): the
// workers copy first only with a multipart threshold this high
// (objstore.Store.CopiesUnread).
const maxCopyObject = 5 << 30

// s3Requests are the HEAD and CopyObject requests the workers send.
type s3Requests struct {
	heads, copies      int64
	headNote, copyNote string
}

// workerRequests counts the HEAD and CopyObject requests the workers send for
// photos with copies objects to copy, multipart of them above the multipart
// threshold and meta of them metadata objects (a photo has at most one: the
// others' jobs have none). Per photo, whatever the path, one listing of its
// animations (counted by the caller).
//
// Copy first (--copy-first, and a threshold of CopyObject's 5 GiB): per
// photo a HEAD of its metadata, made with the listing, whether or not the
// job has one (a 404 finds none, where a copy made first would answer
// NoSuchKey, a failed COPY priced 12.5 times a HEAD); a metadata that exists
// is copied pinned to that HEAD and proven by its own response, with no read
// after it. Every other object is copied with no read before; a copy made
// first is proven by the read of its source after it, which is also the
// recheck. A multipart-sized object's copy made first is refused (too large
// for one CopyObject) and it takes the careful path: source read, copy in
// parts, copy read back, recheck.
//
// Careful path (--copy-first=false, or a lower threshold): per photo a HEAD
// of its metadata, which is also that copy's source read (the copy is pinned
// to it); per other object a HEAD of the source before its copy; per object
// the recheck before the swap (--recheck-sources); a read back of a multipart
// copy only (a single-part copy is proven by its own response where the
// server keeps every header on a copy, as S3 does).
//
// Either way, a HEAD of the destination before every copy sent where the
// server ignores conditional copies (--destination-head): a refused
// multipart copy made first's included, and on the copy-first path the
// metadata's once its HEAD found it (none for a metadata that does not
// exist).
func workerRequests(o Options, photos, copies, multipart, meta int64) s3Requests {
	dest := int64(0)
	if o.DestinationHead {
		dest = 1
	}
	recheck := int64(1)
	if o.NoSourceRecheck {
		recheck = 0
	}
	single := copies - multipart
	if !o.NoCopyFirst && o.MultipartThreshold >= maxCopyObject {
		return s3Requests{
			heads:    max(single-meta, 0)*(1+dest) + photos + meta*dest + multipart*(2+recheck+2*dest),
			copies:   single + multipart,
			headNote: "per photo: its metadata, read with the listing whether or not the job has one (its copy is pinned to it: no read after); per other copy made first: its source read after the copy, which proves it and is the recheck; per multipart copy (careful path): source, copy read back, recheck (--recheck-sources); destination before every copy sent, the metadata's only where it exists (--destination-head)",
			copyNote: "per object; per multipart object also the copy made first, refused as too large for one CopyObject; none for a metadata that does not exist",
		}
	}
	return s3Requests{
		heads:    photos + (copies - meta) + recheck*copies + multipart + dest*copies,
		copies:   single,
		headNote: "per photo: its metadata object, which is also its copy's source read; per other copy: its source before the copy; per copy: the source again before the swap (--recheck-sources), destination (--destination-head); per multipart copy: the copy read back",
	}
}
