package synths3

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// found is an object as a request finds it: from the keyspace or the extras.
type found struct {
	keyspace bool
	a        attrs
	slot     Slot
	user     bool
	obj      Object // keyspace objects
	x        *extra // extras
}

func (f found) etag() string {
	if f.keyspace {
		return f.obj.ETag
	}
	return f.x.etag
}

func (f found) size() int64 {
	if f.keyspace {
		return f.obj.Size
	}
	return f.x.size
}

func (f found) lastModified() time.Time {
	if !f.keyspace {
		return f.x.lastModified
	}
	return f.obj.LastModified
}

// lookup finds key (ok false when it does not exist).
func (s *Server) lookup(key string) (found, bool) {
	if a, sl, user, ok := s.ks.locate(key); ok {
		if !s.state.present(a, sl, user) {
			return found{}, false
		}
		f := found{keyspace: true, a: a, slot: sl, user: user, obj: s.ks.objectOf(a, sl)}
		if user {
			f.obj.LastModified = s.ks.cfg.MigratedAt
		}
		return f, true
	}
	x, ok := s.state.extras.get(key)
	if !ok {
		return found{}, false
	}
	return found{x: x}, true
}

// inKeyspace reports whether key names a keyspace object (present or not).
func (s *Server) inKeyspace(key string) (attrs, Slot, bool, bool) { return s.ks.locate(key) }

// sameETag compares ETags with or without their quotes.
func sameETag(a, b string) bool { return strings.Trim(a, `"`) == strings.Trim(b, `"`) }

// writeObjectHeaders sets what a HEAD or GET tells about f.
func (s *Server) writeObjectHeaders(w http.ResponseWriter, r *http.Request, f found, withChecksum bool) {
	h := w.Header()
	h.Set("ETag", f.etag())
	h.Set("Last-Modified", f.lastModified().UTC().Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	checksums := map[string]string{}
	class := ClassStandard
	if f.keyspace {
		h.Set("Content-Type", f.obj.ContentType)
		class = f.obj.StorageClass
		if f.user {
			// Copies carry the CRC64NVME their copy asked for; legacy
			// objects, written before checksums, carry none.
			checksums["CRC64NVME"] = f.obj.Checksum
		}
	} else {
		h.Set("Content-Type", f.x.contentType)
		for k, v := range f.x.headers {
			h.Set(k, v)
		}
		for k, v := range f.x.metadata {
			h.Set("x-amz-meta-"+k, v)
		}
		class = f.x.storageClass
		checksums = f.x.checksums
	}
	if class != ClassStandard {
		h.Set("x-amz-storage-class", class)
	}
	if withChecksum && strings.EqualFold(r.Header.Get("x-amz-checksum-mode"), "ENABLED") && len(checksums) > 0 {
		for alg, v := range checksums {
			h.Set("x-amz-checksum-"+strings.ToLower(alg), v)
		}
		h.Set("x-amz-checksum-type", "FULL_OBJECT")
	}
}

// headObject answers HeadObject and, with body, GetObject.
func (s *Server) headObject(w http.ResponseWriter, r *http.Request, key string, body bool) error {
	q := r.URL.Query()
	for _, p := range []string{"partNumber", "versionId", "response-content-type", "response-content-disposition"} {
		if q.Has(p) {
			return notImplemented(operation(r) + " with " + p)
		}
	}
	f, ok := s.lookup(key)
	if !ok {
		return noSuchKey(key)
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && !sameETag(m, f.etag()) {
		return preconditionFailed(key)
	}
	if m := r.Header.Get("If-None-Match"); m != "" && (m == "*" || sameETag(m, f.etag())) {
		s.writeObjectHeaders(w, r, f, false)
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if r.Header.Get("If-Modified-Since") != "" || r.Header.Get("If-Unmodified-Since") != "" {
		return notImplemented(operation(r) + " with If-Modified-Since or If-Unmodified-Since")
	}
	size := f.size()
	start, end, ranged, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		return err
	}
	// A ranged read carries no full-object checksum; a whole GET of a
	// keyspace object carries none either, since its checksum is not the
	// CRC of the bytes streamed (a client validating it would refuse them).
	s.writeObjectHeaders(w, r, f, !body || (!ranged && !f.keyspace && !f.x.fromKeyspace))
	w.Header().Set("Content-Length", strconv.FormatInt(end-start, 10))
	if ranged {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if !body || r.Method == http.MethodHead {
		return nil
	}
	if !f.keyspace && !f.x.fromKeyspace {
		_, _ = w.Write(f.x.body[start:end])
		return nil
	}
	seed := f.obj.seed
	if !f.keyspace {
		seed = f.x.seed
	}
	writeBytes(w, seed, start, end)
	return nil
}

// parseRange reads a single "bytes=a-b", "bytes=a-" or "bytes=-n" range.
func parseRange(v string, size int64) (start, end int64, ranged bool, err error) {
	if v == "" {
		return 0, size, false, nil
	}
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, false, notImplemented("Range " + v)
	}
	a, b, _ := strings.Cut(spec, "-")
	invalid := s3Error{http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The requested range is not satisfiable", ""}
	switch {
	case a == "":
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false, invalid
		}
		return max(0, size-n), size, true, nil
	default:
		s, err := strconv.ParseInt(a, 10, 64)
		if err != nil || s >= size {
			return 0, 0, false, invalid
		}
		e := size - 1
		if b != "" {
			if e, err = strconv.ParseInt(b, 10, 64); err != nil || e < s {
				return 0, 0, false, invalid
			}
			e = min(e, size-1)
		}
		return s, e + 1, true, nil
	}
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// writeBytes streams bytes [start, end) of the object seeded by seed: the
// same pseudo-random bytes at any offset, generated on the fly.
func writeBytes(w io.Writer, seed uint64, start, end int64) {
	buf := make([]byte, 32<<10)
	for pos := start; pos < end; {
		n := min(int64(len(buf)), end-pos)
		for k := range n {
			p := uint64(pos + k)
			buf[k] = byte(splitmix(seed^(p>>3)) >> (8 * (p & 7)))
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return
		}
		pos += n
	}
}

// objectBytes returns the whole object seeded by seed (small extras only).
func objectBytes(seed uint64, size int64) []byte {
	var b bytes.Buffer
	writeBytes(&b, seed, 0, size)
	return b.Bytes()
}

// The checksum algorithms S3 offers, by the name its headers use.
var checksumAlgorithms = map[string]func() hash.Hash{
	"CRC32":     func() hash.Hash { return crc32.NewIEEE() },
	"CRC32C":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"CRC64NVME": func() hash.Hash { return crc64.New(crc64NVME) },
	"SHA1":      sha1.New,
	"SHA256":    sha256.New,
}

// crc64NVME is CRC-64/NVME (reflected polynomial 0x9a6c9329ac4bc9b5; Go's
// crc64 inverts before and after, as the standard's init and xorout do).
var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

func checksumOf(alg string, body []byte) string {
	h := checksumAlgorithms[alg]()
	h.Write(body)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// contentHeaders are the headers S3 keeps with an object as they were sent.
var contentHeaders = []string{"Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires", "x-amz-website-redirect-location"}

// headersFrom reads the content headers, user metadata and content type of
// a write (PutObject, or CopyObject with REPLACE).
func headersFrom(r *http.Request, x *extra) {
	x.contentType = r.Header.Get("Content-Type")
	if x.contentType == "" {
		x.contentType = "binary/octet-stream"
	}
	x.headers = map[string]string{}
	for _, h := range contentHeaders {
		if v := r.Header.Get(h); v != "" {
			x.headers[h] = v
		}
	}
	x.metadata = map[string]string{}
	for k, v := range r.Header {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-meta-"); ok && len(v) > 0 {
			x.metadata[name] = v[0]
		}
	}
}

// writeConditions checks If-None-Match and If-Match of a write against the
// destination's current object (nil when none).
func writeConditions(r *http.Request, key string, curETag string, exists bool) error {
	if m := r.Header.Get("If-None-Match"); m != "" {
		if m != "*" {
			return notImplemented("If-None-Match other than * on a write")
		}
		if exists {
			return preconditionFailed(key)
		}
	}
	if m := r.Header.Get("If-Match"); m != "" {
		if !exists {
			return noSuchKey(key)
		}
		if m != "*" && !sameETag(m, curETag) {
			return preconditionFailed(key)
		}
	}
	return nil
}

func refuseUnsupportedWrite(r *http.Request, op string) error {
	if sse := r.Header.Get("x-amz-server-side-encryption"); sse != "" && sse != "AES256" {
		return notImplemented(op + " with server-side encryption " + sse)
	}
	if r.Header.Get("x-amz-object-lock-mode") != "" || r.Header.Get("x-amz-object-lock-legal-hold") != "" {
		return notImplemented(op + " with Object Lock")
	}
	return nil
}

// putObject stores an object outside the keyspace (the keyspace's own keys
// cannot hold other bytes: 501).
func (s *Server) putObject(w http.ResponseWriter, r *http.Request, key string) error {
	if _, _, _, ok := s.inKeyspace(key); ok {
		return notImplemented("PutObject onto a key of the keyspace (" + key + ")")
	}
	if err := refuseUnsupportedWrite(r, "PutObject"); err != nil {
		return err
	}
	if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") || strings.HasPrefix(r.Header.Get("x-amz-content-sha256"), "STREAMING-") {
		return notImplemented("PutObject with an aws-chunked body")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.opts.MaxBody+1))
	if err != nil {
		return s3Error{http.StatusBadRequest, "IncompleteBody", err.Error(), key}
	}
	if int64(len(body)) > s.opts.MaxBody {
		return s3Error{http.StatusBadRequest, "EntityTooLarge", fmt.Sprintf("synths3 keeps bodies of at most %d bytes", s.opts.MaxBody), key}
	}
	sum := md5.Sum(body)
	if m := r.Header.Get("Content-MD5"); m != "" && m != base64.StdEncoding.EncodeToString(sum[:]) {
		return s3Error{http.StatusBadRequest, "BadDigest", "The Content-MD5 you specified did not match what we received.", key}
	}
	x := &extra{size: int64(len(body)), etag: `"` + hex.EncodeToString(sum[:]) + `"`, body: body, checksums: map[string]string{},
		lastModified: time.Now().UTC().Truncate(time.Second), storageClass: ClassStandard}
	headersFrom(r, x)
	if c := r.Header.Get("x-amz-storage-class"); c != "" {
		x.storageClass = c
	}
	for alg := range checksumAlgorithms {
		v := r.Header.Get("x-amz-checksum-" + strings.ToLower(alg))
		if v == "" {
			continue
		}
		if got := checksumOf(alg, body); got != v {
			return s3Error{http.StatusBadRequest, "BadDigest", fmt.Sprintf("The %s you specified did not match the calculated checksum.", alg), key}
		}
		x.checksums[alg] = v
	}
	if len(x.checksums) == 0 {
		// S3 computes a CRC64NVME for every upload that names none.
		x.checksums["CRC64NVME"] = checksumOf("CRC64NVME", body)
	}
	err = s.state.extras.put(key, x, func(cur *extra) error {
		etag := ""
		if cur != nil {
			etag = cur.etag
		}
		return writeConditions(r, key, etag, cur != nil)
	})
	if err != nil {
		return asS3Error(err, key)
	}
	w.Header().Set("ETag", x.etag)
	for alg, v := range x.checksums {
		w.Header().Set("x-amz-checksum-"+strings.ToLower(alg), v)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func asS3Error(err error, key string) error {
	if full, ok := err.(errExtrasFull); ok {
		return s3Error{http.StatusInsufficientStorage, "TooManyObjects", full.Error(), key}
	}
	return err
}

type copyResult struct {
	XMLName           xml.Name `xml:"CopyObjectResult"`
	NS                string   `xml:"xmlns,attr"`
	ETag              string   `xml:"ETag"`
	LastModified      string   `xml:"LastModified"`
	ChecksumType      string   `xml:"ChecksumType,omitempty"`
	ChecksumCRC32     string   `xml:"ChecksumCRC32,omitempty"`
	ChecksumCRC32C    string   `xml:"ChecksumCRC32C,omitempty"`
	ChecksumCRC64NVME string   `xml:"ChecksumCRC64NVME,omitempty"`
	ChecksumSHA1      string   `xml:"ChecksumSHA1,omitempty"`
	ChecksumSHA256    string   `xml:"ChecksumSHA256,omitempty"`
}

func (c *copyResult) setChecksum(alg, v string) {
	switch alg {
	case "CRC32":
		c.ChecksumCRC32 = v
	case "CRC32C":
		c.ChecksumCRC32C = v
	case "CRC64NVME":
		c.ChecksumCRC64NVME = v
	case "SHA1":
		c.ChecksumSHA1 = v
	case "SHA256":
		c.ChecksumSHA256 = v
	}
	c.ChecksumType = "FULL_OBJECT"
}

const isoMillis = "2006-01-02T15:04:05.000Z"

// copySourceKey reads x-amz-copy-source ("bucket/key", URL-encoded).
func (s *Server) copySourceKey(r *http.Request) (string, error) {
	v := strings.TrimPrefix(r.Header.Get("x-amz-copy-source"), "/")
	if p, _, ok := strings.Cut(v, "?"); ok {
		return "", notImplemented("CopyObject of a version (" + v + ")")
	} else {
		v = p
	}
	v, err := url.PathUnescape(v)
	if err != nil {
		return "", s3Error{http.StatusBadRequest, "InvalidArgument", "x-amz-copy-source: " + err.Error(), ""}
	}
	bucket, key, ok := strings.Cut(v, "/")
	if !ok || key == "" {
		return "", s3Error{http.StatusBadRequest, "InvalidArgument", "x-amz-copy-source must name bucket/key", ""}
	}
	if bucket != s.opts.Bucket {
		return "", s3Error{http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist", ""}
	}
	return key, nil
}

// copyObject copies server-side: a keyspace object onto its own legacy or
// user-scoped key (the copy the migration makes, or a rollback's copy back),
// or anything onto a key outside the keyspace.
func (s *Server) copyObject(w http.ResponseWriter, r *http.Request, key string) error {
	srcKey, err := s.copySourceKey(r)
	if err != nil {
		return err
	}
	if err := refuseUnsupportedWrite(r, "CopyObject"); err != nil {
		return err
	}
	if r.Header.Get("x-amz-copy-source-if-modified-since") != "" || r.Header.Get("x-amz-copy-source-if-unmodified-since") != "" {
		return notImplemented("CopyObject with x-amz-copy-source-if-(un)modified-since")
	}
	src, ok := s.lookup(srcKey)
	if !ok {
		return noSuchKey(srcKey)
	}
	if m := r.Header.Get("x-amz-copy-source-if-match"); m != "" && !sameETag(m, src.etag()) {
		return preconditionFailed(srcKey)
	}
	if m := r.Header.Get("x-amz-copy-source-if-none-match"); m != "" && (m == "*" || sameETag(m, src.etag())) {
		return preconditionFailed(srcKey)
	}
	alg := strings.ToUpper(r.Header.Get("x-amz-checksum-algorithm"))
	if alg != "" && checksumAlgorithms[alg] == nil {
		return s3Error{http.StatusBadRequest, "InvalidRequest", "unknown checksum algorithm " + alg, key}
	}
	replace := strings.EqualFold(r.Header.Get("x-amz-metadata-directive"), "REPLACE")
	res := copyResult{NS: s3NS}
	if a, sl, user, ok := s.inKeyspace(key); ok {
		if err := s.copyWithinKeyspace(r, src, key, a, sl, user, alg, replace); err != nil {
			return err
		}
		o := s.ks.objectOf(a, sl)
		res.ETag, res.LastModified = o.ETag, s.ks.cfg.MigratedAt.Format(isoMillis)
		if !user {
			res.LastModified = o.LastModified.Format(isoMillis)
		}
		res.setChecksum("CRC64NVME", o.Checksum)
		writeXML(w, http.StatusOK, res)
		return nil
	}
	x, err := copyToExtra(r, src, alg, replace)
	if err != nil {
		return err
	}
	err = s.state.extras.put(key, x, func(cur *extra) error {
		etag := ""
		if cur != nil {
			etag = cur.etag
		}
		return writeConditions(r, key, etag, cur != nil)
	})
	if err != nil {
		return asS3Error(err, key)
	}
	res.ETag, res.LastModified = x.etag, x.lastModified.Format(isoMillis)
	for a, v := range x.checksums {
		if alg == "" || a == alg {
			res.setChecksum(a, v)
		}
	}
	writeXML(w, http.StatusOK, res)
	return nil
}

// copyWithinKeyspace makes the keyspace object (a, sl) exist at key, if the
// source is the same object and the write's conditions hold.
func (s *Server) copyWithinKeyspace(r *http.Request, src found, key string, a attrs, sl Slot, user bool, alg string, replace bool) error {
	if !src.keyspace || src.a.i != a.i || src.slot != sl {
		return notImplemented("CopyObject of other bytes onto a key of the keyspace (" + key + ")")
	}
	o := s.ks.objectOf(a, sl)
	if alg != "" && alg != "CRC64NVME" {
		return notImplemented("CopyObject onto a keyspace key with checksum " + alg + " (only CRC64NVME)")
	}
	if c := r.Header.Get("x-amz-storage-class"); c != "" && c != o.StorageClass {
		return notImplemented("CopyObject changing a keyspace object's storage class")
	}
	if replace && r.Header.Get("Content-Type") != o.ContentType {
		return notImplemented("CopyObject replacing a keyspace object's headers")
	}
	mu := s.state.lock(a)
	mu.Lock()
	defer mu.Unlock()
	if err := writeConditions(r, key, o.ETag, s.state.present(a, sl, user)); err != nil {
		return err
	}
	s.state.setPresent(a, sl, user, true)
	return nil
}

// copyToExtra builds the object a copy of src writes outside the keyspace.
func copyToExtra(r *http.Request, src found, alg string, replace bool) (*extra, error) {
	x := &extra{lastModified: time.Now().UTC().Truncate(time.Second), checksums: map[string]string{}}
	if src.keyspace {
		o := src.obj
		x.size, x.etag, x.seed, x.fromKeyspace = o.Size, o.ETag, o.seed, true
		x.contentType, x.storageClass = o.ContentType, o.StorageClass
		x.headers, x.metadata = map[string]string{}, map[string]string{}
		if alg != "" && alg != "CRC64NVME" {
			return nil, notImplemented("CopyObject of a keyspace object with checksum " + alg + " (only CRC64NVME)")
		}
		x.checksums["CRC64NVME"] = o.Checksum
	} else {
		c := *src.x
		x.size, x.etag, x.body, x.seed, x.fromKeyspace = c.size, c.etag, c.body, c.seed, c.fromKeyspace
		x.contentType, x.headers, x.metadata, x.storageClass = c.contentType, c.headers, c.metadata, c.storageClass
		for k, v := range c.checksums {
			x.checksums[k] = v
		}
		if alg != "" && x.checksums[alg] == "" {
			if x.fromKeyspace {
				return nil, notImplemented("CopyObject of a copy of a keyspace object with checksum " + alg)
			}
			x.checksums = map[string]string{alg: checksumOf(alg, x.body)}
		}
	}
	if replace {
		headersFrom(r, x)
	}
	if c := r.Header.Get("x-amz-storage-class"); c != "" {
		x.storageClass = c
	}
	if v := r.Header.Get("x-amz-website-redirect-location"); v != "" {
		x.headers["x-amz-website-redirect-location"] = v
	}
	return x, nil
}

// deleteObject deletes one object, conditionally on If-Match.
func (s *Server) deleteObject(w http.ResponseWriter, r *http.Request, key string) error {
	if r.URL.Query().Has("versionId") {
		return notImplemented("DeleteObject of a version")
	}
	if err := s.remove(key, r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// remove deletes key; with ifMatch, only if it exists with that ETag (404
// NoSuchKey when gone, 412 when changed, as S3 answers). Without, a missing
// key is no error.
func (s *Server) remove(key, ifMatch string) error {
	check := func(exists bool, etag string) error {
		if ifMatch == "" {
			return nil
		}
		if !exists {
			return noSuchKey(key)
		}
		if ifMatch != "*" && !sameETag(ifMatch, etag) {
			return preconditionFailed(key)
		}
		return nil
	}
	if a, sl, user, ok := s.inKeyspace(key); ok {
		mu := s.state.lock(a)
		mu.Lock()
		defer mu.Unlock()
		if err := check(s.state.present(a, sl, user), s.ks.objectOf(a, sl).ETag); err != nil {
			return err
		}
		s.state.setPresent(a, sl, user, false)
		return nil
	}
	_, err := s.state.extras.remove(key, func(cur *extra) error {
		if cur == nil {
			return check(false, "")
		}
		return check(true, cur.etag)
	})
	return err
}

type deleteRequest struct {
	Quiet   bool `xml:"Quiet"`
	Objects []struct {
		Key  string `xml:"Key"`
		ETag string `xml:"ETag"`
	} `xml:"Object"`
}

type deleteResult struct {
	XMLName xml.Name        `xml:"DeleteResult"`
	NS      string          `xml:"xmlns,attr"`
	Deleted []deletedObject `xml:"Deleted"`
	Errors  []deleteError   `xml:"Error"`
}

type deletedObject struct {
	Key string `xml:"Key"`
}

type deleteError struct {
	Key     string `xml:"Key"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// deleteObjects answers DeleteObjects, each object conditional on its ETag
// when one is given.
func (s *Server) deleteObjects(w http.ResponseWriter, r *http.Request) error {
	var req deleteRequest
	if err := xml.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&req); err != nil {
		return s3Error{http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed: " + err.Error(), ""}
	}
	if len(req.Objects) == 0 || len(req.Objects) > 1000 {
		return s3Error{http.StatusBadRequest, "MalformedXML", fmt.Sprintf("%d objects: give 1 to 1000", len(req.Objects)), ""}
	}
	res := deleteResult{NS: s3NS}
	for _, o := range req.Objects {
		err := s.remove(o.Key, o.ETag)
		if e, ok := err.(s3Error); ok {
			res.Errors = append(res.Errors, deleteError{Key: o.Key, Code: e.code, Message: e.message})
			continue
		}
		if err != nil {
			return err
		}
		if !req.Quiet {
			res.Deleted = append(res.Deleted, deletedObject{Key: o.Key})
		}
	}
	writeXML(w, http.StatusOK, res)
	return nil
}

type accessControlPolicy struct {
	XMLName xml.Name `xml:"AccessControlPolicy"`
	NS      string   `xml:"xmlns,attr"`
	Owner   aclOwner `xml:"Owner"`
	Grants  []grant  `xml:"AccessControlList>Grant"`
}

type aclOwner struct {
	ID string `xml:"ID"`
}

type grant struct {
	Grantee    grantee `xml:"Grantee"`
	Permission string  `xml:"Permission"`
}

type grantee struct {
	Type string `xml:"xsi:type,attr"`
	ID   string `xml:"ID"`
}

// ownerID is the canonical id of the bucket's (and, ACLs being disabled,
// every object's) owner.
const ownerID = "5ca1ab1e0000000000000000000000000000000000000000000000000000c0de"

// getObjectACL answers what S3 answers with ACLs disabled: the owner's full
// control, nothing else.
func (s *Server) getObjectACL(w http.ResponseWriter, key string) error {
	if _, ok := s.lookup(key); !ok {
		return noSuchKey(key)
	}
	writeXML(w, http.StatusOK, accessControlPolicy{NS: s3NS, Owner: aclOwner{ID: ownerID}, Grants: []grant{{
		Grantee:    grantee{Type: "CanonicalUser", ID: ownerID},
		Permission: "FULL_CONTROL",
	}}})
	return nil
}
