// Package synths3 is the load stand-in of the scale bench: a deterministic
// keyspace of up to 10^9 photos (3.38 legacy objects each), a synthetic S3
// endpoint that serves it without storing a byte of it, and an SQL loader
// that writes the application's photos rows and the ledger of a finished
// migration of it into Postgres in seconds per million rows. With them, plan,
// verify, cleanup, status and `ledger compact` run unchanged against 10^7
// photos on one machine, and the bench counts their S3 requests by operation
// (Server.Stats), their Postgres statements and temporary bytes.
//
// It is a LOAD STAND-IN, NEVER A PLACE TO TEST CORRECTNESS. It answers as
// AWS S3 does for the requests keymigrate makes, closely enough that
// keymigrate's own plan, verify and cleanup count exactly the keyspace and
// that its producer and workers write exactly the rows the loader writes
// (the package's tests show both), but it is not S3: a behaviour keymigrate
// relies on is tested on versitygw and MinIO (internal/harness/testenv), not
// here. It is a harness package: product code never imports it.
//
// # The keyspace
//
// Photo i (0-based; number n = i+1) has the id n (IDBigint) or
// PhotoUUIDPrefix followed by n in 12 hex digits (IDUUID); an owner drawn
// from Owners by a multiplicative hash of n, or none (5%: the workers archive
// it); a UUID-shaped job id whose first 12 hex digits order the jobs (spread
// over every leading digit, as random UUIDs are, through a permutation of
// the photos) and whose last 12 are n; and its objects, in the proportions
// of the demo's seed (see RestoredPer10k and the constants beside it). Every
// choice is a slice of PhotoHash(i) = md5("km:"+n). Keys are built by
// internal/pipeline/keylayout. An object's size, ETag (the hex MD5 of its
// legacy key, quoted) and CRC64NVME are slices of KeyHash(legacy key), and
// a copy keeps them, as a single-part S3 copy keeps its source's ETag.
// Originals are 10% STANDARD_IA, everything else STANDARD. Nothing per photo
// is held in memory: every attribute is computed when asked.
//
// # The endpoint
//
// Server speaks path-style S3 REST, as aws-sdk-go-v2 sends it with
// UsePathStyle, for one bucket, accepting any credentials:
//   - ListObjectsV2: prefix, delimiter, start-after, continuation-token,
//     max-keys (at most 1000), encoding-type=url; keys in S3's bytewise order
//     across pages, generated from the job order (a binary search finds where
//     a page starts), never materialised. A request examines at most 100,000
//     jobs and may then return fewer keys with IsTruncated set, as S3 may (a
//     legacy prefix after cleanup is mostly deleted). Under users/ only a
//     prefix that names one photo's objects (users/{u}/raw/{p}/…) can be
//     listed: users/ as a whole answers 501.
//   - HeadObject and GetObject: size, ETag, Last-Modified, Content-Type,
//     storage class, If-Match, If-None-Match; GetObject streams deterministic
//     bytes of the right size (Range too). Legacy objects carry no checksum
//     (written before checksums, as a bucket holding 10^9 photos was); a
//     user-scoped copy reports its CRC64NVME with ChecksumMode ENABLED. That
//     checksum is a slice of the key's MD5, NOT the CRC of the bytes GetObject
//     streams, so GetObject of a keyspace object sends no checksum header (a
//     client would rightly refuse the bytes); nothing keymigrate reads at
//     scale reads the bytes.
//   - CopyObject: x-amz-copy-source-if-match and -if-none-match on the
//     source, If-None-Match: * and If-Match on the destination (412, or 404
//     when the destination is gone), the CopyObjectResult with the source's
//     ETag and CRC64NVME. A keyspace object can be copied onto its own legacy
//     or user-scoped key, and anything onto a key outside the keyspace; other
//     bytes onto a keyspace key answer 501.
//   - PutObject, outside the keyspace only (the capability probe's objects
//     under users/.keymigrate-probe/, plan's calibration copies, a test's):
//     held in a bounded store of extras (Options.MaxExtras, default 100,000;
//     bodies up to 8 MiB) with their headers, user metadata and checksums
//     (checked, as S3 checks them).
//   - DeleteObject (If-Match) and DeleteObjects (each object's ETag).
//   - HeadBucket, GetBucketOwnershipControls (BucketOwnerEnforced: ACLs
//     disabled, S3's default), GetObjectAcl (the owner's full control).
//
// Everything else (multipart uploads and copies, tagging, versions, SSE-KMS,
// Object Lock, ListObjects v1, bucket configuration) answers 501
// NotImplemented naming the operation, and Stats().NotImplemented records
// it, so that a phase calling something new shows up loudly. Objects keep no
// tags and no user metadata but the extras'; the Last-Modified of every
// user-scoped keyspace object is Config.MigratedAt, not the time of its copy.
//
// State: Mode Legacy (only the legacy objects exist: before the migration)
// or Migrated (the legacy objects and the copies of every photo with an
// owner: after the fleet, before cleanup). Copies and deletions are two
// bits per object slot (SlotsPerPhoto slots a photo: 1.75 MB per million
// photos), so HEAD after DELETE is 404 and a copy makes its destination
// exist. Capabilities is what the endpoint enforces, which is what the fleet's
// probe finds there. Options.Latency adds a fixed delay to every request.
// Server.Stats (and GET /__stats, JSON) counts requests by operation.
//
// # The loader
//
// Load creates the photos table for the keyspace's id type, applies the
// ledger's migrations with the ledger's own Migrate, and fills the tables with
// INSERT … SELECT over generate_series, the keyspace's functions written in
// SQL (sql.go; keys built from the same Go builders) in the LegacyState
// (legacy rows, no ledger) or the FinishedState (rows swapped, ownerless rows
// archived, one finished producer run, photo_moves as Swap and Archive leave
// them, every object_moves row committed and verified with the size, ETags
// and checksum the endpoint answers, the capabilities the first worker
// recorded). Indexes are dropped for the load and rebuilt from their own
// definitions; everything is analysed. Figures: docs/scale-harness.md.
package synths3
