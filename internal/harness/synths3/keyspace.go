package synths3

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// IDType is the type of the photos table's id and owner_id columns: the two
// the ledger supports.
type IDType string

// The id types.
const (
	// IDBigint: photo n has id n (1-based), owner m has id m.
	IDBigint IDType = "bigint"
	// IDUUID: a fixed-prefix UUID with the number in its last 12 hex digits
	// (PhotoUUIDPrefix, OwnerUUIDPrefix).
	IDUUID IDType = "uuid"
)

// The fixed prefixes of uuid ids; the last 12 hex digits are the photo's or
// the owner's number.
const (
	PhotoUUIDPrefix = "9e7d0000-0000-4000-8000-"
	OwnerUUIDPrefix = "0e0a0000-0000-4000-8000-"
)

// What a photo has, in the proportions of the demo's seed (internal/ops/seed,
// seed.Generate), so that the keyspace has its ratio of objects per photo:
// every photo an original; 80% a restored image, 3% of photos (3.75% of
// those with a restored image) an orphan restore beside it that no row
// references; 85% a thumbnail; 30% a metadata file; 10% one animation and 15%
// two (0.40 a photo; the seed has 20% with one to three); 5% no owner. That is
// 1 + 0.80 + 0.03 + 0.85 + 0.30 + 0.40 = 3.38 legacy objects a photo, of which
// a photo with an owner moves 3.35 (orphans are never moved). The fractions are
// per 10,000 photos, drawn from the photo's hash (PhotoHash).
const (
	RestoredPer10k      = 8000
	OrphanPer10k        = 375 // of the photos with a restored image
	ThumbnailPer10k     = 8500
	MetadataPer10k      = 3000
	OneAnimationPer10k  = 1000
	TwoAnimationsPer10k = 1500
	OwnerlessPer10k     = 500
	// InfrequentPer100 of the originals are in STANDARD_IA, the rest (and
	// every other object) in STANDARD.
	InfrequentPer100 = 10
)

// MaxPhotos bounds a keyspace: the job permutation's arithmetic stays inside
// int64 up to it. Memory is 2 bits per object slot in the endpoint's state
// (Server), so 10^9 photos would need 1.75 GB: the bench uses 10^7.
const MaxPhotos = 1_000_000_000

// Slot is the place of one object among a photo's possible objects. Every
// photo has SlotsPerPhoto slots whether or not the objects exist, so an
// object's index (photo*SlotsPerPhoto+slot) is dense enough for a bitset.
type Slot int

// The slots.
const (
	SlotOriginal Slot = iota
	SlotRestored
	SlotOrphan // an unreferenced restore under restored/{job}/
	SlotThumbnail
	SlotMetadata
	SlotAnimation0
	SlotAnimation1
	SlotsPerPhoto = 7
)

// kind is the keylayout kind of a slot.
func (s Slot) kind() keylayout.Kind {
	switch s {
	case SlotOriginal:
		return keylayout.KindOriginal
	case SlotRestored, SlotOrphan:
		return keylayout.KindRestored
	case SlotThumbnail:
		return keylayout.KindThumbnail
	case SlotMetadata:
		return keylayout.KindMetadata
	}
	return keylayout.KindAnimation
}

// legacyBase is 2021-01-01: legacy objects were written in the four years
// after it (PhotoHash decides when).
var legacyBase = time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)

const legacySpanSeconds = 4 * 365 * 24 * 3600

// Config describes a keyspace.
type Config struct {
	// Photos is the number of photos (at most MaxPhotos).
	Photos int64
	// IDType is the type of photo and owner ids (default IDBigint).
	IDType IDType
	// Owners is the number of distinct owners (default Photos/4, at least 1).
	Owners int64
	// MinSize and MaxSize bound object sizes (default 1 KiB to 4 KiB, as the
	// demo seeds). Sizes only change the bytes GetObject streams and the
	// plan's byte counts, never the requests.
	MinSize, MaxSize int64
	// MigratedAt is the Last-Modified of user-scoped objects (default
	// 2026-01-01): the endpoint does not remember when a copy was made.
	MigratedAt time.Time
}

// Keyspace is a deterministic bucket of Photos photos and their objects: every
// attribute of photo i and of its objects is a pure function of i and the
// configuration, computed on demand, so that nothing per photo is held in
// memory. The SQL loader computes the same functions in SQL (sql.go).
type Keyspace struct {
	cfg Config
	// The job permutation: photo i's job is the j-th in key order, with j =
	// (permA*i + permB) mod Photos; jobStep spreads the jobs' leading hex
	// digits over the whole range, as random UUIDs would be spread.
	permB, permInv, jobStep int64
}

// permA is the permutation's multiplier: a prime above MaxPhotos, so it is
// coprime with every keyspace size.
const permA = 1_000_000_007

// New checks the configuration and builds the keyspace.
func New(cfg Config) (*Keyspace, error) {
	if cfg.Photos <= 0 || cfg.Photos > MaxPhotos {
		return nil, fmt.Errorf("keyspace of %d photos: want 1 to %d", cfg.Photos, int64(MaxPhotos))
	}
	if cfg.IDType == "" {
		cfg.IDType = IDBigint
	}
	if cfg.IDType != IDBigint && cfg.IDType != IDUUID {
		return nil, fmt.Errorf("id type %q: want %q or %q", cfg.IDType, IDBigint, IDUUID)
	}
	if cfg.Owners <= 0 {
		cfg.Owners = max(1, cfg.Photos/4)
	}
	if cfg.MinSize <= 0 {
		cfg.MinSize = 1 << 10
	}
	if cfg.MaxSize < cfg.MinSize {
		cfg.MaxSize = max(cfg.MinSize, 4<<10)
	}
	if cfg.MigratedAt.IsZero() {
		cfg.MigratedAt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	n := cfg.Photos
	ks := &Keyspace{cfg: cfg, permB: 7919 % n, jobStep: (1 << 48) / n}
	inv, err := modInverse(permA%n, n)
	if err != nil {
		return nil, err
	}
	ks.permInv = inv
	return ks, nil
}

// modInverse returns x with a*x ≡ 1 (mod m).
func modInverse(a, m int64) (int64, error) {
	if m == 1 {
		return 0, nil
	}
	g, x := extendedGCD(a, m)
	if g != 1 {
		return 0, errors.New("job permutation: multiplier not coprime with the keyspace size")
	}
	return ((x % m) + m) % m, nil
}

func extendedGCD(a, b int64) (g, x int64) {
	oldR, r := a, b
	oldS, s := int64(1), int64(0)
	for r != 0 {
		q := oldR / r
		oldR, r = r, oldR-q*r
		oldS, s = s, oldS-q*s
	}
	return oldR, oldS
}

// Config returns the configuration with its defaults filled in.
func (ks *Keyspace) Config() Config { return ks.cfg }

// Photos is the number of photos.
func (ks *Keyspace) Photos() int64 { return ks.cfg.Photos }

// rank is photo i's job's position in key order.
func (ks *Keyspace) rank(i int64) int64 { return (permA%ks.cfg.Photos*i + ks.permB) % ks.cfg.Photos }

// photoAt is the photo whose job is the j-th in key order.
func (ks *Keyspace) photoAt(j int64) int64 {
	n := ks.cfg.Photos
	return ((j - ks.permB + n) % n) * ks.permInv % n
}

// jobHead is the first 12 hex digits of the job of rank j (monotonic in j).
func (ks *Keyspace) jobHead(j int64) int64 { return j * ks.jobStep }

// JobID is photo i's legacy job id: UUID-shaped, its first 12 hex digits
// ordering the jobs (and spreading them over every leading hex digit, as
// random UUIDs would be), its last 12 the photo's number.
func (ks *Keyspace) JobID(i int64) string {
	h := ks.jobHead(ks.rank(i))
	return fmt.Sprintf("%08x-%04x-4000-8000-%012x", h>>16, h&0xffff, i+1)
}

// PhotoID is photo i's id.
func (ks *Keyspace) PhotoID(i int64) string {
	if ks.cfg.IDType == IDUUID {
		return fmt.Sprintf("%s%012x", PhotoUUIDPrefix, i+1)
	}
	return strconv.FormatInt(i+1, 10)
}

// photoIndex is the inverse of PhotoID (ok false if id is none of ours).
func (ks *Keyspace) photoIndex(id string) (int64, bool) {
	var n int64
	if ks.cfg.IDType == IDUUID {
		tail, ok := strings.CutPrefix(id, PhotoUUIDPrefix)
		if !ok || len(tail) != 12 {
			return 0, false
		}
		v, err := strconv.ParseInt(tail, 16, 64)
		if err != nil {
			return 0, false
		}
		n = v
	} else {
		v, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return 0, false
		}
		n = v
	}
	if n < 1 || n > ks.cfg.Photos || ks.PhotoID(n-1) != id {
		return 0, false
	}
	return n - 1, true
}

// ownerNumber is photo i's owner's number (1-based), whether or not the photo
// is ownerless: a multiplicative hash of the photo's number.
func (ks *Keyspace) ownerNumber(i int64) int64 {
	return ((i+1)*2654435761)%(1<<32)%ks.cfg.Owners + 1
}

func (ks *Keyspace) ownerID(m int64) string {
	if ks.cfg.IDType == IDUUID {
		return fmt.Sprintf("%s%012x", OwnerUUIDPrefix, m)
	}
	return strconv.FormatInt(m, 10)
}

// PhotoHash is md5("km:" + the photo's number): every random-looking choice
// about the photo is a slice of it (see attrsOf).
func PhotoHash(i int64) [16]byte { return md5.Sum([]byte("km:" + strconv.FormatInt(i+1, 10))) }

// attrs is what photo i has.
type attrs struct {
	i          int64
	hash       [16]byte
	restored   bool
	orphan     bool
	thumbnail  bool
	metadata   bool
	animations int
	ownerless  bool
	ext        int // index into extensions
	restoreExt int
	infrequent bool
}

// per10k scales two hash bytes to 0-9999 and per100 one byte to 0-99, each
// value equally likely to within one part in 65,536 (or 256): a modulo would
// favour the low values (65,536 is not a multiple of 10,000).
func per10k(b []byte) int { return (int(b[0])<<8 | int(b[1])) * 10000 >> 16 }

func per100(b byte) int { return int(b) * 100 >> 8 }

func attrsOf(i int64) attrs {
	h := PhotoHash(i)
	a := attrs{
		i: i, hash: h,
		restored:   per10k(h[0:2]) < RestoredPer10k,
		thumbnail:  per10k(h[2:4]) < ThumbnailPer10k,
		metadata:   per10k(h[4:6]) < MetadataPer10k,
		ownerless:  per10k(h[10:12]) < OwnerlessPer10k,
		ext:        extIndex(per100(h[12])),
		restoreExt: extIndex(per100(h[13])),
		infrequent: per100(h[14]) < InfrequentPer100,
	}
	a.orphan = a.restored && per10k(h[8:10]) < OrphanPer10k
	switch v := per10k(h[6:8]); {
	case v < OneAnimationPer10k:
		a.animations = 1
	case v < OneAnimationPer10k+TwoAnimationsPer10k:
		a.animations = 2
	}
	return a
}

// has reports whether the photo has an object in slot s.
func (a attrs) has(s Slot) bool {
	switch s {
	case SlotOriginal:
		return true
	case SlotRestored:
		return a.restored
	case SlotOrphan:
		return a.orphan
	case SlotThumbnail:
		return a.thumbnail
	case SlotMetadata:
		return a.metadata
	case SlotAnimation0:
		return a.animations >= 1
	case SlotAnimation1:
		return a.animations >= 2
	}
	return false
}

// extensions of originals and restored images, with their weights out of 100
// (the seed's).
var extensions = []struct {
	ext, contentType string
	below            int // cumulative weight
}{
	{"jpg", "image/jpeg", 50}, {"png", "image/png", 70}, {"heic", "image/heic", 82},
	{"webp", "image/webp", 92}, {"JPG", "image/jpeg", 97}, {"gif", "image/gif", 100},
}

func extIndex(v int) int {
	for i, e := range extensions {
		if v < e.below {
			return i
		}
	}
	return 0
}

// animationSuffixes are the suffixes of animation keys; photo hash byte 15
// picks them, two bits per animation.
var animationSuffixes = []string{"loop", "boomerang", "slow_720p", "hd"}

// uuidOf formats 16 bytes as a UUID.
func uuidOf(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// restoreID is the id of photo i's referenced restore (the photo hash as a
// UUID); orphanID that of its orphan.
func restoreID(a attrs) string { return uuidOf(a.hash) }

func orphanID(i int64) string {
	return uuidOf(md5.Sum([]byte("km:orphan:" + strconv.FormatInt(i+1, 10))))
}

func animationID(i int64, k int) string {
	return uuidOf(md5.Sum([]byte("km:anim:" + strconv.FormatInt(i+1, 10) + ":" + strconv.Itoa(k))))
}

func animationSuffix(a attrs, k int) string {
	return animationSuffixes[(a.hash[15]>>(2*k))&3]
}

// The legacy keys of originals and thumbnails have no builder in keylayout
// (it only parses them); tests check every key built here with
// keylayout.ParseLegacy. The SQL loader builds its keys from these same
// functions (sqlKey), so the two cannot drift apart.
func legacyOriginalKey(job, ext string) string { return "uploaded/" + job + "." + ext }

func legacyRestoredKey(job, restore, ext string) string {
	return keylayout.LegacyRestoredPrefix(job) + restore + "." + ext
}

func legacyThumbnailKey(job string) string { return "thumbnails/" + job + ".jpg" }

// orphanExt is the extension of every orphan restore.
const orphanExt = "png"

// legacyKey is the key of slot s of the photo with job (whether or not the
// object exists).
func legacyKey(a attrs, job string, s Slot) string {
	switch s {
	case SlotOriginal:
		return legacyOriginalKey(job, extensions[a.ext].ext)
	case SlotRestored:
		return legacyRestoredKey(job, restoreID(a), extensions[a.restoreExt].ext)
	case SlotOrphan:
		return legacyRestoredKey(job, orphanID(a.i), orphanExt)
	case SlotThumbnail:
		return legacyThumbnailKey(job)
	case SlotMetadata:
		return keylayout.LegacyMetadataKey(job)
	case SlotAnimation0, SlotAnimation1:
		k := int(s - SlotAnimation0)
		return keylayout.LegacyAnimationKey(job, animationID(a.i, k), animationSuffix(a, k))
	}
	return ""
}

// userKey is the user-scoped key of slot s ("" for an orphan, which never
// moves), built by keylayout.
func userKey(a attrs, owner, photo string, s Slot) string {
	switch s {
	case SlotOriginal:
		return keylayout.OriginalKey(owner, photo, extensions[a.ext].ext)
	case SlotRestored:
		return keylayout.RestoredKey(owner, photo, extensions[a.restoreExt].ext)
	case SlotThumbnail:
		return keylayout.ThumbnailKey(owner, photo)
	case SlotMetadata:
		return keylayout.MetadataKey(owner, photo)
	case SlotAnimation0, SlotAnimation1:
		k := int(s - SlotAnimation0)
		return keylayout.AnimationKey(owner, photo, animationID(a.i, k), animationSuffix(a, k))
	}
	return ""
}

func contentType(a attrs, s Slot) string {
	switch s {
	case SlotOriginal:
		return extensions[a.ext].contentType
	case SlotRestored:
		return extensions[a.restoreExt].contentType
	case SlotOrphan:
		return "image/png" // orphanExt
	case SlotThumbnail:
		return "image/jpeg"
	case SlotMetadata:
		return "application/json"
	}
	return "video/mp4"
}

// Storage classes.
const (
	ClassStandard   = "STANDARD"
	ClassInfrequent = "STANDARD_IA"
)

func storageClass(a attrs, s Slot) string {
	if s == SlotOriginal && a.infrequent {
		return ClassInfrequent
	}
	return ClassStandard
}

// Object is one object of the keyspace. Its size, ETag and checksum are pure
// functions of its legacy key (KeyHash), and a copy keeps them (a single-part
// copy keeps its source's ETag, as S3's does).
type Object struct {
	Slot      Slot
	Kind      keylayout.Kind
	LegacyKey string
	// UserKey is where the migration copies it ("" for an orphan restore,
	// and for every object of an ownerless photo: neither is moved).
	UserKey      string
	Size         int64
	ETag         string // quoted, as S3 sends it
	ContentType  string
	StorageClass string
	// Checksum is the CRC64NVME S3 would report for a copy (the migration's
	// copies ask for one; legacy objects carry none), base64. It is NOT the
	// CRC of the bytes GetObject streams (see the package doc).
	Checksum     string
	LastModified time.Time
	// seed makes the bytes GetObject streams.
	seed uint64
}

// KeyHash is md5 of a legacy key: the ETag is its hex, the size, the checksum
// and the bytes' seed are slices of it (sql.go computes the same).
func KeyHash(legacyKey string) [16]byte { return md5.Sum([]byte(legacyKey)) }

func (ks *Keyspace) object(a attrs, job, owner, photo string, s Slot) Object {
	key := legacyKey(a, job, s)
	h := KeyHash(key)
	o := Object{
		Slot: s, Kind: s.kind(), LegacyKey: key,
		Size:         ks.cfg.MinSize + int64(binary.BigEndian.Uint32(h[0:4]))%(ks.cfg.MaxSize-ks.cfg.MinSize+1),
		ETag:         `"` + hex.EncodeToString(h[:]) + `"`,
		ContentType:  contentType(a, s),
		StorageClass: storageClass(a, s),
		Checksum:     base64.StdEncoding.EncodeToString(h[8:16]),
		LastModified: legacyBase.Add(time.Duration(int64(binary.BigEndian.Uint32(a.hash[0:4]))%legacySpanSeconds) * time.Second),
		seed:         binary.BigEndian.Uint64(h[0:8]),
	}
	if owner != "" && s != SlotOrphan {
		o.UserKey = userKey(a, owner, photo, s)
	}
	return o
}

// Photo is one photo of the keyspace: its row and its objects.
type Photo struct {
	Index   int64
	ID      string
	OwnerID string // "" when the photo has no owner (the workers archive it)
	JobID   string
	// The row's legacy key columns ("" for NULL).
	OriginalKey, ProcessedKey, ThumbnailKey string
	// Objects are the photo's existing objects, in slot order.
	Objects []Object
	// CreatedAt is the row's created_at and the legacy objects' Last-Modified.
	CreatedAt time.Time
}

// Photo returns photo i (0 <= i < Photos).
func (ks *Keyspace) Photo(i int64) Photo {
	a := attrsOf(i)
	p := Photo{Index: i, ID: ks.PhotoID(i), JobID: ks.JobID(i)}
	if !a.ownerless {
		p.OwnerID = ks.ownerID(ks.ownerNumber(i))
	}
	for s := Slot(0); s < SlotsPerPhoto; s++ {
		if a.has(s) {
			p.Objects = append(p.Objects, ks.object(a, p.JobID, p.OwnerID, p.ID, s))
		}
	}
	p.CreatedAt = p.Objects[0].LastModified
	p.OriginalKey = p.Objects[0].LegacyKey
	for _, o := range p.Objects {
		switch o.Slot {
		case SlotRestored:
			p.ProcessedKey = o.LegacyKey
		case SlotThumbnail:
			p.ThumbnailKey = o.LegacyKey
		}
	}
	return p
}

// Totals count a keyspace's photos and objects.
type Totals struct {
	Photos, Ownerless int64
	// Objects and Bytes are every legacy object; ByPrefix splits them by
	// legacy prefix, ByClass by storage class.
	Objects, Bytes int64
	ByPrefix       map[string]PrefixTotals
	ByClass        map[string]PrefixTotals
	// Moves are the objects the migration copies (photos with an owner, no
	// orphans), by keylayout kind.
	Moves, MoveBytes int64
	MovesByKind      map[keylayout.Kind]PrefixTotals
	Orphans          int64
	OrphanBytes      int64
}

// PrefixTotals are objects and their bytes.
type PrefixTotals struct{ Objects, Bytes int64 }

// Totals walks every photo (a few seconds per million photos) and counts.
func (ks *Keyspace) Totals() Totals {
	t := Totals{ByPrefix: map[string]PrefixTotals{}, ByClass: map[string]PrefixTotals{}, MovesByKind: map[keylayout.Kind]PrefixTotals{}}
	add := func(m PrefixTotals, size int64) PrefixTotals { return PrefixTotals{m.Objects + 1, m.Bytes + size} }
	for i := range ks.cfg.Photos {
		p := ks.Photo(i)
		t.Photos++
		if p.OwnerID == "" {
			t.Ownerless++
		}
		for _, o := range p.Objects {
			t.Objects++
			t.Bytes += o.Size
			prefix, _, _ := strings.Cut(o.LegacyKey, "/")
			t.ByPrefix[prefix+"/"] = add(t.ByPrefix[prefix+"/"], o.Size)
			t.ByClass[o.StorageClass] = add(t.ByClass[o.StorageClass], o.Size)
			if o.Slot == SlotOrphan {
				t.Orphans++
				t.OrphanBytes += o.Size
			}
			if o.UserKey != "" {
				t.Moves++
				t.MoveBytes += o.Size
				t.MovesByKind[o.Kind] = add(t.MovesByKind[o.Kind], o.Size)
			}
		}
	}
	return t
}

// family is one legacy prefix and the slots stored under it.
type family struct {
	prefix string
	slots  []Slot
}

// families are the legacy prefixes in key order.
var families = []family{
	{"animated/", []Slot{SlotAnimation0, SlotAnimation1}},
	{"meta/", []Slot{SlotMetadata}},
	{"restored/", []Slot{SlotRestored, SlotOrphan}},
	{"thumbnails/", []Slot{SlotThumbnail}},
	{"uploaded/", []Slot{SlotOriginal}},
}

func init() {
	// The listing merges families in this order; keylayout is the authority
	// on which prefixes exist.
	if !sort.SliceIsSorted(families, func(i, j int) bool { return families[i].prefix < families[j].prefix }) || len(families) != len(keylayout.LegacyPrefixes) {
		panic("synths3: families out of order or out of step with keylayout.LegacyPrefixes")
	}
	for _, f := range families {
		found := false
		for _, p := range keylayout.LegacyPrefixes {
			found = found || p == f.prefix
		}
		if !found {
			panic("synths3: " + f.prefix + " is not in keylayout.LegacyPrefixes")
		}
	}
}

// locate finds the keyspace object a key names: the photo, the slot, and
// whether it is the user-scoped key (else the legacy one). ok is false for
// any key the keyspace does not hold (those live in the extras).
func (ks *Keyspace) locate(key string) (a attrs, s Slot, user bool, ok bool) {
	var i int64
	if keylayout.IsUserScoped(key) {
		u, err := keylayout.ParseUserKey(key)
		if err != nil {
			return attrs{}, 0, false, false
		}
		if i, ok = ks.photoIndex(u.PhotoID); !ok {
			return attrs{}, 0, false, false
		}
		user = true
	} else {
		l, err := keylayout.ParseLegacy(key)
		if err != nil || len(l.JobID) != 36 {
			return attrs{}, 0, false, false
		}
		n, err := strconv.ParseInt(l.JobID[24:], 16, 64)
		if err != nil || n < 1 || n > ks.cfg.Photos || ks.JobID(n-1) != l.JobID {
			return attrs{}, 0, false, false
		}
		i = n - 1
	}
	a = attrsOf(i)
	job, owner, photo := ks.JobID(i), "", ks.PhotoID(i)
	if !a.ownerless {
		owner = ks.ownerID(ks.ownerNumber(i))
	}
	for s := Slot(0); s < SlotsPerPhoto; s++ {
		if !a.has(s) {
			continue
		}
		if (!user && legacyKey(a, job, s) == key) || (user && owner != "" && s != SlotOrphan && userKey(a, owner, photo, s) == key) {
			return a, s, user, true
		}
	}
	return attrs{}, 0, false, false
}

// objectOf is the keyspace object of photo a in slot s.
func (ks *Keyspace) objectOf(a attrs, s Slot) Object {
	owner := ""
	if !a.ownerless {
		owner = ks.ownerID(ks.ownerNumber(a.i))
	}
	return ks.object(a, ks.JobID(a.i), owner, ks.PhotoID(a.i), s)
}
