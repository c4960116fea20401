package appsim

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// ObjKey names one object of a photo independently of where it is stored: its
// kind, and the parts of its name that survive the migration (the extension
// of an original or restored image, the id and suffix of an animation). The
// same ObjKey names the legacy object and its user-scoped copy.
type ObjKey struct {
	Kind   keylayout.Kind `json:"kind"`
	Ext    string         `json:"ext,omitempty"`
	AnimID string         `json:"animation_id,omitempty"`
	Suffix string         `json:"suffix,omitempty"`
}

// String is a short name for reports.
func (k ObjKey) String() string {
	switch k.Kind {
	case keylayout.KindOriginal, keylayout.KindRestored:
		return string(k.Kind) + "." + k.Ext
	case keylayout.KindAnimation:
		return "animation " + k.AnimID + "_" + k.Suffix
	}
	return string(k.Kind)
}

// Ref is the StorageService's name for the object of photoID.
func (k ObjKey) Ref(photoID string) storage.Ref {
	return storage.Ref{Kind: k.Kind, PhotoID: photoID, Ext: k.Ext, AnimationID: k.AnimID, Suffix: k.Suffix}
}

// UserKey is the object's key under users/{owner}/.
func (k ObjKey) UserKey(owner, photoID string) string {
	return keylayout.UserKey{Kind: k.Kind, UserID: owner, PhotoID: photoID, Ext: k.Ext, AnimationID: k.AnimID, Suffix: k.Suffix}.Key()
}

// ObjKeyOf names the object a parsed user-scoped key holds.
func ObjKeyOf(u keylayout.UserKey) ObjKey {
	return ObjKey{Kind: u.Kind, Ext: u.Ext, AnimID: u.AnimationID, Suffix: u.Suffix}
}

// ObjKeyOfLegacy names the object a parsed legacy key holds.
func ObjKeyOfLegacy(l keylayout.Legacy) ObjKey {
	return ObjKey{Kind: l.Kind, Ext: l.Ext, AnimID: l.AnimationID, Suffix: l.Suffix}
}

// Version is one state of an object: its bytes' SHA-256 (empty: the object
// does not exist) and the interval during which the write that produced it
// ran. End is zero while the write is in flight.
type Version struct {
	Hash  string    `json:"hash"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// InPlace marks a version the application wrote over the legacy key
	// itself (rewrite_legacy_in_place), and ETag is what that write
	// returned: the migration's ledger names the source version a copy
	// stands for by its ETag.
	InPlace bool   `json:"in_place,omitempty"`
	ETag    string `json:"etag,omitempty"`
}

// Object is the history of one object of a photo.
type Object struct {
	// Legacy is the legacy key the object's first version lives at ("" for
	// objects the application created under users/).
	Legacy string `json:"legacy,omitempty"`
	// AppUser is true once the application wrote this object under the
	// owner's prefix itself (a rewrite, or an upload).
	AppUser  bool      `json:"app_user,omitempty"`
	Versions []Version `json:"versions"`
}

// Latest is the newest version.
func (o *Object) Latest() Version { return o.Versions[len(o.Versions)-1] }

// Live reports whether the newest version exists.
func (o *Object) Live() bool { return o.Latest().Hash != "" }

// RewrittenInPlace reports whether the application wrote any version of the
// object over its legacy key.
func (o *Object) RewrittenInPlace() bool {
	for _, v := range o.Versions {
		if v.InPlace {
			return true
		}
	}
	return false
}

// Pristine reports whether the object still holds the bytes of its legacy
// object, never rewritten or deleted by the application.
func (o *Object) Pristine() bool {
	return o.Legacy != "" && len(o.Versions) == 1 && o.Versions[0].Hash != ""
}

// Origin says how a photo came to be.
type Origin string

// The origins of photos.
const (
	OriginSeeded       Origin = "seeded"        // legacy data present before the migration
	OriginApp          Origin = "app"           // uploaded under Phase 1 (user-scoped from the start)
	OriginDuplicate    Origin = "duplicate"     // a new row sharing another photo's legacy objects
	OriginLegacySeeded Origin = "legacy_seeded" // legacy data arriving late (a restore from backup)
	OriginProblem      Origin = "problem"       // a row made broken on purpose
)

// Event is a change of a photo's structure (its owner, or its existence)
// during which reads of it may legitimately fail.
type Event struct {
	Kind  string    `json:"kind"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Photo is the model of one photos row and its objects.
type Photo struct {
	ID         string             `json:"id"`
	Owner      *string            `json:"owner"`
	PrevOwners []string           `json:"prev_owners,omitempty"`
	Origin     Origin             `json:"origin"`
	JobID      string             `json:"job_id,omitempty"`
	Legacy     LegacyRow          `json:"legacy_row"`
	Expect     string             `json:"expect_failure,omitempty"`
	Objects    map[ObjKey]*Object `json:"-"`
	Deleted    bool               `json:"deleted,omitempty"`
	Events     []Event            `json:"events,omitempty"`
	// Added is when the model learnt of the photo: just after the
	// application inserted its row.
	Added time.Time `json:"added"`

	lock sync.Mutex // held by an application writer for a whole operation
}

// LegacyRow are the key columns a legacy photo was inserted with.
type LegacyRow struct {
	Original  string  `json:"original,omitempty"`
	Processed *string `json:"processed,omitempty"`
	Thumbnail *string `json:"thumbnail,omitempty"`
}

// Model is the simulator's truth: every photo, who owns it, and which bytes
// each of its objects holds. It is safe for concurrent use.
type Model struct {
	mu     sync.RWMutex
	photos map[string]*Photo
	order  []string // photo ids in insertion order, for random picks
	// legacy maps every legacy key the simulator knows to its bytes' hash.
	legacy map[string]string
	// headers maps legacy keys to the content headers and user metadata the
	// object was written with, which its migrated copy must carry.
	headers map[string]Headers
	users   []string
	// inPlace are the jobs whose legacy objects the application rewrote in
	// place: no other row may share them (a duplicate would read the new
	// bytes too, which its model does not know).
	inPlace map[string]bool
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{photos: map[string]*Photo{}, legacy: map[string]string{}, headers: map[string]Headers{}, inPlace: map[string]bool{}}
}

func (m *Model) addPhoto(p *Photo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addPhotoLocked(p)
}

func (m *Model) addPhotoLocked(p *Photo) {
	if p.Objects == nil {
		p.Objects = map[ObjKey]*Object{}
	}
	if p.Added.IsZero() {
		p.Added = time.Now()
	}
	m.photos[p.ID] = p
	m.order = append(m.order, p.ID)
}

// addPhotoUnlessInPlace adds p unless its job was claimed for rewrites in
// place (claimInPlace), in one step with that claim's check.
func (m *Model) addPhotoUnlessInPlace(p *Photo) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inPlace[p.JobID] {
		return false
	}
	m.addPhotoLocked(p)
	return true
}

func (m *Model) addLegacy(key, hash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.legacy[key] = hash
}

// Headers are what an object carries besides its bytes that a copy must keep.
type Headers struct {
	ContentType        string `json:"content_type,omitempty"`
	CacheControl       string `json:"cache_control,omitempty"`
	ContentDisposition string `json:"content_disposition,omitempty"`
	ContentLanguage    string `json:"content_language,omitempty"`
	ContentEncoding    string `json:"content_encoding,omitempty"`
	// Expires is the Expires header as a HEAD returned it; compared as an
	// HTTP date (a copy that sets it explicitly may format it anew).
	Expires  string            `json:"expires,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Tags are the object's tags (GetObjectTagging).
	Tags map[string]string `json:"tags,omitempty"`
	// Checksums are the object's full-object checksums by algorithm
	// (CRC64NVME, CRC32C, CRC32, SHA256, SHA1): the same bytes have the same
	// value, so a copy that carries an algorithm must carry the same value.
	Checksums map[string]string `json:"checksums,omitempty"`
}

// Diff says how got (the HEAD and tags of a copy) differs from h, the legacy
// object's ("" if it does not). multipart says the copy was assembled from
// parts: it then carries the checksum the worker asked for, not necessarily
// one of the source's; a single-part copy asks for the source's own
// full-object algorithm, so it must carry at least one of them.
func (h Headers) Diff(got Headers, multipart bool) string {
	var d []string
	cmp := func(name, want, have string) {
		if want != have {
			d = append(d, fmt.Sprintf("%s %q, the legacy object has %q", name, have, want))
		}
	}
	cmp("Content-Type", h.ContentType, got.ContentType)
	cmp("Cache-Control", h.CacheControl, got.CacheControl)
	cmp("Content-Disposition", h.ContentDisposition, got.ContentDisposition)
	cmp("Content-Language", h.ContentLanguage, got.ContentLanguage)
	cmp("Content-Encoding", h.ContentEncoding, got.ContentEncoding)
	cmp("Expires", httpDate(h.Expires), httpDate(got.Expires))
	if !sameMap(h.Metadata, got.Metadata) {
		d = append(d, fmt.Sprintf("metadata %v, the legacy object has %v", got.Metadata, h.Metadata))
	}
	if !sameMap(h.Tags, got.Tags) {
		d = append(d, fmt.Sprintf("tags %v, the legacy object has %v", got.Tags, h.Tags))
	}
	shared := 0
	for alg, v := range h.Checksums {
		if have, ok := got.Checksums[alg]; ok {
			shared++
			if have != v {
				d = append(d, fmt.Sprintf("%s checksum %s, the legacy object has %s", alg, have, v))
			}
		}
	}
	if !multipart && len(h.Checksums) > 0 && shared == 0 {
		d = append(d, fmt.Sprintf("checksums %v, none of the legacy object's %v (a single-part copy asks for the source's own algorithm)", got.Checksums, h.Checksums))
	}
	return strings.Join(d, "; ")
}

// httpDate normalises an HTTP date ("" stays ""; what does not parse is
// compared as it is).
func httpDate(v string) string {
	if v == "" {
		return ""
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return v
	}
	return t.UTC().Format(http.TimeFormat)
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (m *Model) addHeaders(key string, h Headers) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.headers[key] = h
}

// LegacyHeaders are the headers a legacy key was written with.
func (m *Model) LegacyHeaders(key string) (Headers, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	h, ok := m.headers[key]
	return h, ok
}

// LegacyHash is the hash of a legacy key's bytes, if the model knows it.
func (m *Model) LegacyHash(key string) (string, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	h, ok := m.legacy[key]
	return h, ok
}

// LegacyKeys are every legacy key the simulator wrote (seeded, late, broken
// on purpose), sorted.
func (m *Model) LegacyKeys() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	keys := make([]string, 0, len(m.legacy))
	for k := range m.legacy {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// claimInPlace marks p's job as rewritten in place, if no other photo the
// model knows (deleted ones included) shares it; false if one does.
func (m *Model) claimInPlace(p *Photo) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.JobID == "" {
		return false
	}
	if m.inPlace[p.JobID] {
		return true
	}
	for _, q := range m.photos {
		if q != p && q.JobID == p.JobID {
			return false
		}
	}
	m.inPlace[p.JobID] = true
	return true
}

// rewrittenInPlace reports whether job's legacy objects were claimed for
// rewrites in place.
func (m *Model) rewrittenInPlace(job string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.inPlace[job]
}

func (m *Model) addUsers(ids ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users = append(m.users, ids...)
}

// Photo returns the photo with id (nil if unknown).
func (m *Model) Photo(id string) *Photo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.photos[id]
}

// IDs lists every photo id the model has, deleted ones included.
func (m *Model) IDs() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]string(nil), m.order...)
}

// pick returns a random photo id satisfying ok, trying a bounded number of
// times.
func (m *Model) pick(intn func(int) int, ok func(p *Photo) bool) *Photo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.order) == 0 {
		return nil
	}
	for range 64 {
		p := m.photos[m.order[intn(len(m.order))]]
		if ok(p) {
			return p
		}
	}
	return nil
}

// beginWrite records that a write of k in p started, producing hash.
func (m *Model) beginWrite(p *Photo, k ObjKey, hash string, legacy string) *Version {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := p.Objects[k]
	if o == nil {
		o = &Object{Legacy: legacy}
		p.Objects[k] = o
	}
	o.Versions = append(o.Versions, Version{Hash: hash, Start: time.Now()})
	return &o.Versions[len(o.Versions)-1]
}

// beginInPlace records that a write of k's legacy key in p started,
// producing hash.
func (m *Model) beginInPlace(p *Photo, k ObjKey, hash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := p.Objects[k]
	o.Versions = append(o.Versions, Version{Hash: hash, Start: time.Now(), InPlace: true})
}

// endInPlace records that the newest write of k in p, over its legacy key,
// completed with etag, and that the legacy key now holds hash.
func (m *Model) endInPlace(p *Photo, k ObjKey, etag string, appUser bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := p.Objects[k]
	v := &o.Versions[len(o.Versions)-1]
	v.End, v.ETag = time.Now(), etag
	m.legacy[o.Legacy] = v.Hash
	if appUser {
		o.AppUser = true
	}
}

// endWrite records that the newest write of k in p completed.
func (m *Model) endWrite(p *Photo, k ObjKey, appUser bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := p.Objects[k]
	o.Versions[len(o.Versions)-1].End = time.Now()
	if appUser {
		o.AppUser = true
	}
}

// forgetWrite drops the newest (unfinished) write of k in p: it did not happen
// as far as the application is concerned.
func (m *Model) forgetWrite(p *Photo, k ObjKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := p.Objects[k]
	o.Versions = o.Versions[:len(o.Versions)-1]
	if len(o.Versions) == 0 {
		delete(p.Objects, k)
	}
}

// beginEvent records that a structural change of p started.
func (m *Model) beginEvent(p *Photo, kind string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.Events = append(p.Events, Event{Kind: kind, Start: time.Now()})
	return len(p.Events) - 1
}

func (m *Model) endEvent(p *Photo, i int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.Events[i].End = time.Now()
}

// ObjectState is a copy of one object's model for checks.
type ObjectState struct {
	Key ObjKey
	Object
}

// PhotoState is a consistent copy of one photo's model.
type PhotoState struct {
	ID         string
	Owner      *string
	PrevOwners []string
	Origin     Origin
	JobID      string
	Legacy     LegacyRow
	Expect     string
	Deleted    bool
	Events     []Event
	Objects    []ObjectState
	Added      time.Time
}

// State copies photo id's model.
func (m *Model) State(id string) (PhotoState, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p := m.photos[id]
	if p == nil {
		return PhotoState{}, false
	}
	s := PhotoState{ID: p.ID, Owner: p.Owner, PrevOwners: append([]string(nil), p.PrevOwners...), Origin: p.Origin, JobID: p.JobID,
		Legacy: p.Legacy, Expect: p.Expect, Deleted: p.Deleted, Events: append([]Event(nil), p.Events...), Added: p.Added}
	for k, o := range p.Objects {
		s.Objects = append(s.Objects, ObjectState{Key: k, Object: Object{Legacy: o.Legacy, AppUser: o.AppUser, Versions: append([]Version(nil), o.Versions...)}})
	}
	sort.Slice(s.Objects, func(i, j int) bool { return s.Objects[i].Key.String() < s.Objects[j].Key.String() })
	return s, true
}

// Object returns the state of one object.
func (s PhotoState) Object(k ObjKey) (ObjectState, bool) {
	for _, o := range s.Objects {
		if o.Key == k {
			return o, true
		}
	}
	return ObjectState{}, false
}

// Verdict is the judgement of one read against the model.
type Verdict string

// The verdicts of a read.
const (
	// ReadOK: the bytes (or the absence) are those of the last write that
	// completed before the read started, or of a write in flight during it.
	ReadOK Verdict = "ok"
	// ReadExcused: the read failed while the photo's owner was changing or
	// the photo was being deleted, which the application tolerates.
	ReadExcused Verdict = "excused"
	// ReadStale: older bytes than the last write completed before the read began.
	ReadStale Verdict = "stale"
	// ReadMissing: nothing was found where the model has bytes.
	ReadMissing Verdict = "missing"
	// ReadReappeared: bytes were found for an object deleted before the read began.
	ReadReappeared Verdict = "reappeared"
	// ReadUnknown: bytes that no write of this object produced.
	ReadUnknown Verdict = "unknown_bytes"
	// ReadError: the read failed for another reason (a refusal, an S3 error).
	ReadError Verdict = "error"
	// ReadCopyInFlight: older bytes than an application's rewrite of the
	// legacy key in place, read from keymigrate's copy before its swap:
	// Resolve prefers the user-scoped object once it exists, and the worker
	// reads the source again before its swap (ExcuseInPlace).
	ReadCopyInFlight Verdict = "excused_copy_in_flight"
	// ReadRewriteLostByDesign: older bytes than an application's rewrite of
	// the legacy key in place, from a committed copy whose ledger record
	// names the older version, of a rewrite that completed only after the
	// copy was recorded (so possibly after the worker's last read of the
	// source): the window docs/soak.md names, which verify reports
	// (legacy_changed_after_move) and cleanup keeps the legacy object for.
	ReadRewriteLostByDesign Verdict = "excused_rewrite_lost_by_design"
	// ReadUnavailable: a read through the S3 fault proxy (proxied.go) that
	// still failed unavailable after the application's retries: an outcome
	// the report counts, not a violation (the bytes of a read that did
	// answer are judged as any other's).
	ReadUnavailable Verdict = "unavailable_after_retries"
)

// Good reports whether a read with this verdict is not a violation.
func (v Verdict) Good() bool {
	switch v {
	case ReadOK, ReadExcused, ReadCopyInFlight, ReadRewriteLostByDesign, ReadUnavailable:
		return true
	}
	return false
}

// CopyRecord is what the migration's ledger says of its copy at a
// user-scoped key (ledgertest reads it): the ETag of the source version it
// stands for, when the copy's ETag was recorded (before the worker's last
// read of the source: the recheck, or a copy-first's proof), and whether it
// was committed.
type CopyRecord = ledgertest.CopyRecord

// ExcuseInPlace judges a read of keymigrate's copy of o that found got, an
// older version than the model expects, where the versions after it are all
// the application's rewrites of the legacy key in place. A copy not yet
// committed may hold any earlier version (the worker reads the source again
// before its swap). A committed one may hold an older version only if its
// record does not claim a newer one (the worker's proof of a copy made
// first, or its recheck, saw the newer bytes and recorded them anyway) and
// every newer version completed after the copy was recorded (else the
// worker's last read of the source, which comes after that record, must
// have seen it). It returns the verdict ("" if not excused) and why.
func ExcuseInPlace(o Object, got string, rec CopyRecord) (Verdict, string) {
	i := -1
	for j, v := range o.Versions {
		if v.Hash == got && got != "" {
			i = j
		}
	}
	if i < 0 || i == len(o.Versions)-1 {
		return "", "not an older version"
	}
	for _, v := range o.Versions[i+1:] {
		if !v.InPlace {
			return "", "a newer version was written under users/, not in place"
		}
	}
	if !rec.Found {
		return "", "the ledger records no copy at this key"
	}
	if !rec.Committed {
		return ReadCopyInFlight, ""
	}
	if v := o.Versions[i]; v.ETag != "" && rec.SourceETag != v.ETag {
		return "", fmt.Sprintf("the copy holds version %d (ETag %s), but the ledger says it stands for ETag %s", i+1, v.ETag, rec.SourceETag)
	}
	if why := newerMissed(o, i, rec); why != "" {
		return "", why
	}
	return ReadRewriteLostByDesign, ""
}

// LostByDesign says whether a committed copy whose record names an older
// source than o's newest version is the window ExcuseInPlace excuses (""),
// or why not: `migratectl verify` then rightly calls the copy stale
// (legacy_changed_after_move), and the soak expects it to.
func LostByDesign(o Object, rec CopyRecord) string {
	if !rec.Found || !rec.Committed {
		return "the ledger records no committed copy"
	}
	i := -1
	for j, v := range o.Versions {
		switch {
		case v.ETag != "" && v.ETag == rec.SourceETag:
			i = j
		case i < 0 && !v.InPlace && j+1 < len(o.Versions) && o.Versions[j+1].InPlace:
			i = j // the version before the first rewrite in place, whose ETag the model does not know
		}
	}
	if i < 0 {
		return "the ledger's source ETag " + rec.SourceETag + " is no version the model knows"
	}
	return newerMissed(o, i, rec)
}

// newerMissed says which version after i, all written in place, the copy
// recorded by rec should hold instead of version i ("" if none).
func newerMissed(o Object, i int, rec CopyRecord) string {
	for j := i + 1; j < len(o.Versions); j++ {
		v := o.Versions[j]
		if !v.InPlace {
			continue // the application's own write under users/: the copy's record does not answer for it
		}
		if v.ETag != "" && rec.SourceETag == v.ETag {
			return fmt.Sprintf("the copy holds version %d of %d, but the ledger says it stands for version %d (ETag %s): the copy was accepted for bytes it does not hold", i+1, len(o.Versions), j+1, v.ETag)
		}
		if !v.End.IsZero() && v.End.Before(rec.CopiedAt) {
			return fmt.Sprintf("the copy holds version %d of %d, but version %d was written in place at %s, before the copy was recorded at %s: the worker's last read of the source, after that record, must have seen it",
				i+1, len(o.Versions), j+1, v.End.Format("15:04:05.000"), rec.CopiedAt.Format("15:04:05.000"))
		}
	}
	return ""
}

// Judge decides whether a read of object k of photo id, started at rs and
// ended at re, that found hash got ("" for no object) is correct. failed is
// true when the read did not get an answer about the object at all (an error
// other than "not found").
//
// Staleness is defined on the write intervals: a read may return the version
// of the last write that completed before it started, or that of any write
// that started before it ended (in flight while it ran, or completed during
// it). Anything older is stale.
func (m *Model) Judge(id string, k ObjKey, got string, failed bool, rs, re time.Time) Verdict {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p := m.photos[id]
	o := p.Objects[k]
	excused := false
	for _, e := range p.Events {
		if e.Start.Before(re) && (e.End.IsZero() || e.End.After(rs)) {
			excused = true
		}
	}
	if o == nil {
		if failed {
			if excused {
				return ReadExcused
			}
			return ReadError
		}
		if got == "" {
			return ReadOK
		}
		return ReadUnknown
	}
	last := -1
	for i, v := range o.Versions {
		if !v.End.IsZero() && v.End.Before(rs) {
			last = i
		}
	}
	ok := map[string]bool{}
	if last >= 0 {
		ok[o.Versions[last].Hash] = true
	} else {
		ok[""] = true // not written yet when the read started
	}
	for i := last + 1; i < len(o.Versions); i++ {
		if o.Versions[i].Start.Before(re) {
			ok[o.Versions[i].Hash] = true
		}
	}
	if failed {
		if excused {
			return ReadExcused
		}
		return ReadError
	}
	if ok[got] {
		return ReadOK
	}
	if excused && got == "" {
		return ReadExcused
	}
	if got == "" {
		return ReadMissing
	}
	if ok[""] && len(ok) == 1 {
		return ReadReappeared
	}
	for i := 0; i <= last; i++ {
		if o.Versions[i].Hash == got {
			return ReadStale
		}
	}
	return ReadUnknown
}

// Users lists the application's users.
func (m *Model) Users() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]string(nil), m.users...)
}

// Describe is a one-line account of a photo for violation reports.
func (s PhotoState) Describe() string {
	owner := "<none>"
	if s.Owner != nil {
		owner = *s.Owner
	}
	return fmt.Sprintf("photo %s (origin %s, owner %s, job %s, deleted %v)", s.ID, s.Origin, owner, s.JobID, s.Deleted)
}
