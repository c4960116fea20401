// Package appsim simulates the photo application during the migration window,
// for the soak harness: concurrent clients that create, rewrite and delete
// photos and objects, change owners, insert legacy rows late, and read every
// live photo continuously through the dual-read path, checking each read
// against the simulator's own model of the truth (which bytes every object of
// every photo holds, and who owns it).
//
// Every S3 write and read goes through the application's Phase 1
// StorageService (internal/app/storage), as the real application's would; rows are
// written with the simulator's own SQL on the photos table. The only exceptions
// are what the application does not do through the service: seeding legacy
// data (the pre-Phase-1 application's objects, which Phase 1 forbids writing)
// and confirming that legacy objects exist before a duplicate row is inserted
// (a read, which the application role may do).
//
// It is a test tool: nothing in the production binaries imports it.
package appsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/time/rate"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Op is a kind of application operation.
type Op string

// The operations the simulator performs.
const (
	OpCreate          Op = "create_photo"            // new photo, objects Put under users/
	OpCreatePresigned Op = "create_photo_presigned"  // new photo, original by presigned POST
	OpDuplicate       Op = "duplicate_legacy_row"    // new row sharing a legacy photo's objects
	OpDuplicateNoOwn  Op = "duplicate_ownerless"     // the same, without an owner
	OpLegacySeeded    Op = "insert_legacy_seeded"    // late legacy row with its own new legacy objects
	OpRewriteLegacy   Op = "rewrite_legacy_row"      // new bytes for an object of a row with legacy keys
	OpRewriteUser     Op = "rewrite_user_row"        // new bytes for an object of a user-scoped row
	OpRewriteInPlace  Op = "rewrite_legacy_in_place" // new bytes over the legacy key a row still reads from
	OpDeleteAnimation Op = "delete_animation"        // delete one animation (user-scoped rows)
	OpDeletePhoto     Op = "delete_photo"            // delete the row, then its users/ objects
	OpChangeOwner     Op = "change_owner"            // account merge
	OpRemoveOwner     Op = "remove_owner"            // a legacy photo's owner set to NULL (owners.go)
	OpGiveOwner       Op = "give_owner"              // an ownerless photo, not archived, given an owner (owners.go)
	OpAddAnimation    Op = "add_animation"           // a photo without an animation gets one under users/ (animations.go)
	OpRewriteAnim     Op = "rewrite_animation"       // new bytes for an animation of a user-scoped row (animations.go)
	OpRead            Op = "read"                    // one object read through Resolve + GetResolved
)

// WriteOps are the write operations, with their default weights.
var WriteOps = map[Op]int{
	OpCreate: 8, OpCreatePresigned: 3, OpDuplicate: 5, OpDuplicateNoOwn: 1, OpLegacySeeded: 4,
	OpRewriteLegacy: 10, OpRewriteUser: 8, OpDeleteAnimation: 3, OpDeletePhoto: 4, OpChangeOwner: 4,
	OpRewriteInPlace: 6, OpRemoveOwner: 2, OpGiveOwner: 2, OpAddAnimation: 3, OpRewriteAnim: 3,
}

// Config shapes a simulation.
type Config struct {
	// Seed drives every choice the simulator makes (which photo, which
	// operation, which bytes). The interleaving with other processes is not
	// reproducible; the sequence of choices of each client is.
	Seed uint64
	// Readers and Writers are the concurrent clients of each kind.
	Readers, Writers int
	// ReadRate is photo reads per second over all readers (each reads every
	// object of one photo); WriteRate is operations per second over all writers.
	ReadRate, WriteRate float64
	// Weights overrides WriteOps (an operation with weight 0 is never done).
	Weights map[Op]int
	// Users is how many application users exist besides the seeded owners.
	Users int
	// LargeWrites is how many of the late legacy rows get real object
	// shapes (see PopulateOptions.Shaped): a 6-12 MiB original or animation,
	// Expires, Content-Encoding, tags and a CRC32C or SHA256 checksum. 0:
	// none.
	LargeWrites int
	// ListOneIn makes one reader turn in this many a listing of a random
	// user's photos instead of a photo read (listing.go); 0: never.
	ListOneIn int
	// Aimed are the operations aimed, half of the time, at photos the
	// migration is moving right now (Deps.InFlight), so that they land
	// between a worker's copies and its swap. Nil: the rewrites
	// (rewrite_legacy_row, rewrite_user_row, rewrite_legacy_in_place).
	Aimed map[Op]bool
}

// aimedRewrites is Config.Aimed's default.
var aimedRewrites = map[Op]bool{OpRewriteLegacy: true, OpRewriteUser: true, OpRewriteInPlace: true}

// Deps are the application's connections: its database pool and its
// StorageService, both talking to the servers directly; Objects (direct too)
// seeds legacy data and reads legacy keys.
type Deps struct {
	Pool    *pgxpool.Pool
	Storage *storage.Service
	Objects *objstore.Store
	HTTP    *http.Client // for presigned POSTs
	// InFlight, if set, lists photos the migration is moving right now (the
	// harness reads the ledger): the rewrites aim at them part of the time,
	// so that they land between a worker's copy and its swap, where the
	// worker's guards matter, rather than almost never.
	InFlight func(ctx context.Context) []string
	// CopyRecord, if set, is the ledger's record of keymigrate's copy at a
	// user-scoped key of a photo (ExcuseInPlace judges a read with it).
	CopyRecord func(ctx context.Context, photoID, newKey string) (CopyRecord, error)
	// Proxied, if set, is the application's StorageService through the S3
	// fault proxy the workers use: half the clients, chosen by the seed, use
	// it (proxied.go). Nil: every client goes straight to the server.
	Proxied *storage.Service
}

// Sim is the application simulator.
type Sim struct {
	cfg   Config
	deps  Deps
	model *Model
	stats *Stats
	phase atomic.Value // string

	stop   context.CancelFunc
	wg     sync.WaitGroup
	opSeq  atomic.Uint64
	paused atomic.Bool
	// large counts the late legacy rows given real object shapes.
	large atomic.Int64
}

// New returns a simulator; Seed populates it, Start runs its clients.
func New(cfg Config, deps Deps) *Sim {
	if cfg.Readers <= 0 {
		cfg.Readers = 3
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 3
	}
	if cfg.ReadRate <= 0 {
		cfg.ReadRate = 40
	}
	if cfg.WriteRate <= 0 {
		cfg.WriteRate = 8
	}
	if cfg.Weights == nil {
		cfg.Weights = WriteOps
	}
	if cfg.Users <= 0 {
		cfg.Users = 8
	}
	if cfg.Aimed == nil {
		cfg.Aimed = aimedRewrites
	}
	if deps.HTTP == nil {
		deps.HTTP = http.DefaultClient
	}
	s := &Sim{cfg: cfg, deps: deps, model: NewModel(), stats: newStats()}
	s.phase.Store("setup")
	return s
}

// Model is the simulator's truth.
func (s *Sim) Model() *Model { return s.model }

// Stats are the simulator's counters.
func (s *Sim) Stats() *Stats { return s.stats }

// SetPhase labels the reads that follow (latencies are reported per phase:
// "baseline" before the migration starts, "migration" while it runs).
func (s *Sim) SetPhase(p string) { s.phase.Store(p) }

// PauseWrites stops (true) or resumes the writers; readers go on.
func (s *Sim) PauseWrites(p bool) { s.paused.Store(p) }

// rng returns a generator for one client or operation, derived from the seed.
func (s *Sim) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(s.cfg.Seed, stream))
}

// Start runs the readers and writers until Stop.
func (s *Sim) Start(ctx context.Context) {
	ctx, s.stop = context.WithCancel(ctx)
	readLimit := rate.NewLimiter(rate.Limit(s.cfg.ReadRate), 1)
	writeLimit := rate.NewLimiter(rate.Limit(s.cfg.WriteRate), 1)
	for i := range s.cfg.Readers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			r := s.rng(1000 + uint64(i))
			ctx := ctx
			if s.proxiedActor(i) {
				ctx = withProxied(ctx)
			}
			for readLimit.Wait(ctx) == nil {
				s.readRandom(ctx, r)
			}
		}()
	}
	for i := range s.cfg.Writers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			r := s.rng(2000 + uint64(i))
			ctx := ctx
			if s.proxiedActor(i) {
				ctx = withProxied(ctx)
			}
			for writeLimit.Wait(ctx) == nil {
				if s.paused.Load() {
					continue
				}
				s.writeRandom(ctx, r)
			}
		}()
	}
}

// Stop ends every client and waits for them.
func (s *Sim) Stop() {
	if s.stop != nil {
		s.stop()
	}
	s.wg.Wait()
}

func (s *Sim) pickOp(r *rand.Rand) Op {
	ops := make([]Op, 0, len(s.cfg.Weights))
	total := 0
	for op, w := range s.cfg.Weights {
		if w > 0 {
			ops = append(ops, op)
			total += w
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i] < ops[j] })
	n := r.IntN(total)
	for _, op := range ops {
		if n < s.cfg.Weights[op] {
			return op
		}
		n -= s.cfg.Weights[op]
	}
	return ops[0]
}

func (s *Sim) writeRandom(ctx context.Context, r *rand.Rand) {
	op := s.pickOp(r)
	var err error
	var done bool
	switch op {
	case OpCreate, OpCreatePresigned:
		done, err = s.createPhoto(ctx, r, op == OpCreatePresigned)
	case OpDuplicate, OpDuplicateNoOwn:
		done, err = s.duplicate(ctx, r, op == OpDuplicateNoOwn)
	case OpLegacySeeded:
		done, err = s.insertLegacySeeded(ctx, r)
	case OpRewriteLegacy, OpRewriteUser:
		op, done, err = s.rewrite(ctx, r)
	case OpRewriteInPlace:
		done, err = s.rewriteInPlace(ctx, r)
	case OpDeleteAnimation:
		done, err = s.deleteAnimation(ctx, r)
	case OpDeletePhoto:
		done, err = s.deletePhoto(ctx, r)
	case OpChangeOwner:
		done, err = s.changeOwner(ctx, r)
	case OpRemoveOwner:
		done, err = s.removeOwner(ctx, r)
	case OpGiveOwner:
		done, err = s.giveOwner(ctx, r)
	case OpAddAnimation:
		done, err = s.addAnimation(ctx, r)
	case OpRewriteAnim:
		done, err = s.rewriteAnimation(ctx, r)
	}
	if ctx.Err() != nil {
		return
	}
	s.stats.op(op, done, err)
	if isProxied(ctx) && proxiedWrites[op] {
		s.stats.proxiedWrite(op, done, err)
	}
}

// --- bytes and rows -------------------------------------------------------

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func randomBytes(r *rand.Rand, kind keylayout.Kind) []byte {
	n := 256 + r.IntN(3840)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if kind == keylayout.KindMetadata {
		return []byte(fmt.Sprintf(`{"rewritten":true,"pad":%q}`, hex.EncodeToString(b[:n/4])))
	}
	return b
}

func newID(r *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	u, _ := uuid.FromBytes(b[:])
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return u.String()
}

var imageTypes = map[string]string{"jpg": "image/jpeg", "JPG": "image/jpeg", "png": "image/png", "heic": "image/heic", "webp": "image/webp", "gif": "image/gif"}

func contentType(k ObjKey) string {
	switch k.Kind {
	case keylayout.KindOriginal, keylayout.KindRestored:
		if ct, ok := imageTypes[k.Ext]; ok {
			return ct
		}
		return "application/octet-stream"
	case keylayout.KindThumbnail:
		return "image/jpeg"
	case keylayout.KindAnimation:
		return "video/mp4"
	}
	return "application/json"
}

// Row is a photos row as the application reads it.
type Row struct {
	ID        string
	OwnerID   *string
	Original  string
	Processed *string
	Thumbnail *string
	Status    string
}

func (r Row) storageRow() storage.PhotoRow {
	return storage.PhotoRow{ID: r.ID, OwnerID: r.OwnerID, OriginalKey: r.Original, ProcessedKey: r.Processed, ThumbnailKey: r.Thumbnail}
}

// errNoRow: the photos row does not exist.
var errNoRow = errors.New("no photos row")

func (s *Sim) loadRow(ctx context.Context, id string) (Row, error) {
	var r Row
	err := s.deps.Pool.QueryRow(ctx, `SELECT id::text, owner_id, original_key, processed_key, thumbnail_key, status FROM photos WHERE id = $1`, id).
		Scan(&r.ID, &r.OwnerID, &r.Original, &r.Processed, &r.Thumbnail, &r.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return Row{}, errNoRow
	}
	return r, err
}

// column returns a pointer to the row's column that records kind (nil for
// metadata and animations) and its name.
func (r *Row) column(kind keylayout.Kind) (**string, string) {
	switch kind {
	case keylayout.KindRestored:
		return &r.Processed, "processed_key"
	case keylayout.KindThumbnail:
		return &r.Thumbnail, "thumbnail_key"
	}
	return nil, ""
}

// readable reports whether the application can read the photo: it exists
// and has a valid owner, and its keys are of the layout.
func readable(p *Photo) bool {
	return !p.Deleted && ownerOK(p) && (p.Origin != OriginProblem || p.Expect == ExpectSourceMissing)
}

// ownerOK reports whether the application can act for the photo's owner.
func ownerOK(p *Photo) bool {
	return p.Owner != nil && keylayout.ValidateID(*p.Owner) == nil
}

// --- reads ----------------------------------------------------------------

func (s *Sim) readRandom(ctx context.Context, r *rand.Rand) {
	if s.cfg.ListOneIn > 0 && r.IntN(s.cfg.ListOneIn) == 0 {
		s.listRandom(ctx, r)
		return
	}
	p := s.model.pick(r.IntN, readable)
	if p == nil {
		return
	}
	s.readPhoto(ctx, p.ID, false, r.IntN(presignedReadsOneIn) == 0)
}

// presignedReadsOneIn: one photo read in this many goes through presigned
// download URLs (presigned.go).
const presignedReadsOneIn = 4

// ReadPhoto reads every object of the photo the model knows (deleted ones
// included: they must stay absent) through the dual-read path, judges each
// read and records it. final marks the reads of the end-of-run check, which
// are recorded apart from the run's.
func (s *Sim) ReadPhoto(ctx context.Context, id string, final bool) []ReadResult {
	return s.readPhoto(ctx, id, final, false)
}

// readPhoto is ReadPhoto, through presigned download URLs where the object
// is user-scoped if presigned.
func (s *Sim) readPhoto(ctx context.Context, id string, final, presigned bool) []ReadResult {
	st, ok := s.model.State(id)
	if !ok {
		return nil
	}
	s.model.mu.RLock()
	can := readable(s.model.photos[id])
	s.model.mu.RUnlock()
	if !can {
		return nil
	}
	var out []ReadResult
	for _, o := range st.Objects {
		if ctx.Err() != nil {
			return out
		}
		res := s.readObject(ctx, id, o.Key, presigned)
		if res.Verdict == "" {
			continue // the photo is gone: nothing to read
		}
		s.stats.read(s.phase.Load().(string), res, final)
		out = append(out, res)
	}
	return out
}

// ReadResult is one judged read.
type ReadResult struct {
	PhotoID string        `json:"photo_id"`
	Object  string        `json:"object"`
	Key     string        `json:"key,omitempty"`
	Verdict Verdict       `json:"verdict"`
	Error   string        `json:"error,omitempty"`
	Latency time.Duration `json:"latency"`
	Retried bool          `json:"retried,omitempty"`
	// Presigned: the bytes were downloaded through a presigned URL (the
	// key the read resolved to was user-scoped).
	Presigned bool `json:"presigned,omitempty"`
	// Proxied: the read went through the S3 fault proxy (proxied.go).
	Proxied bool      `json:"proxied,omitempty"`
	At      time.Time `json:"at"`
}

// readObject reads one object as the application does: read the row, resolve
// the key, read the bytes. A read that finds nothing, or is refused, is tried
// once more from the row: Resolve and GetResolved are two requests, and the
// object can move between them (a swap, a rollback). The judgement spans both
// attempts.
func (s *Sim) readObject(ctx context.Context, id string, k ObjKey, presigned bool) ReadResult {
	rs := time.Now()
	res := ReadResult{PhotoID: id, Object: k.String(), At: rs, Proxied: isProxied(ctx)}
	var got string
	var failed bool
	for attempt := 0; attempt < 2; attempt++ {
		before, inPlace := s.copyRecordBefore(ctx, id, k)
		start := time.Now()
		var key string
		var err error
		err = s.retryApp(ctx, func() error {
			var err error
			got, key, err = s.fetch(ctx, id, k, presigned)
			return err
		})
		res.Presigned = presigned && keylayout.IsUserScoped(key)
		if attempt == 0 {
			res.Latency = time.Since(start)
		}
		res.Key = key
		if errors.Is(err, errNoRow) {
			if st, _ := s.model.State(id); st.Deleted || s.deleting(id) {
				return ReadResult{} // deleted: not a read
			}
		}
		if errors.Is(err, errNoOwner) {
			if st, _ := s.model.State(id); !readOfOwnerless(st, rs) {
				return ReadResult{} // ownerless: nobody's to read
			}
		}
		failed = err != nil && !errors.Is(err, storage.ErrNotFound)
		res.Error = ""
		if err != nil {
			res.Error = err.Error()
		}
		if ctx.Err() != nil {
			return ReadResult{}
		}
		res.Verdict = s.model.Judge(id, k, got, failed, rs, time.Now())
		if res.Verdict == ReadError && res.Proxied && Unavailable(err) {
			// The application could not make the read through the
			// faults even with its retries: counted, not a violation.
			res.Verdict = ReadUnavailable
		}
		if inPlace && res.Verdict == ReadStale && keylayout.IsUserScoped(key) {
			res.Verdict, res.Error = s.excuseInPlace(ctx, id, k, key, got, before)
		}
		if res.Verdict == ReadOK || res.Verdict == ReadExcused || (!failed && got != "") {
			break
		}
		res.Retried = true
	}
	return res
}

// copyRecordBefore reads, before a read of an object the application
// rewrote in place, the ledger's record of keymigrate's copy of it under the
// photo's owner: the copy the read may find can be re-made and its record
// replaced before the read is judged.
func (s *Sim) copyRecordBefore(ctx context.Context, id string, k ObjKey) (CopyRecord, bool) {
	s.model.mu.RLock()
	p := s.model.photos[id]
	o := p.Objects[k]
	inPlace := o != nil && o.RewrittenInPlace() && p.Owner != nil
	var key string
	if inPlace {
		key = k.UserKey(*p.Owner, id)
	}
	s.model.mu.RUnlock()
	if !inPlace || s.deps.CopyRecord == nil {
		return CopyRecord{}, false
	}
	rec, _ := s.deps.CopyRecord(ctx, id, key)
	return rec, true
}

// excuseInPlace judges a stale read of keymigrate's copy at key of an object
// the application rewrote in place, with the ledger's record before the read
// and now (ExcuseInPlace): excused if either excuses it.
func (s *Sim) excuseInPlace(ctx context.Context, id string, k ObjKey, key, got string, before CopyRecord) (Verdict, string) {
	st, _ := s.model.State(id)
	o, _ := st.Object(k)
	if v, _ := ExcuseInPlace(o.Object, got, before); v != "" {
		return v, ""
	}
	if s.deps.CopyRecord == nil {
		return ReadStale, ""
	}
	after, err := s.deps.CopyRecord(ctx, id, key)
	if err != nil {
		return ReadStale, "the ledger's record of the copy could not be read: " + err.Error()
	}
	v, why := ExcuseInPlace(o.Object, got, after)
	if v == "" {
		return ReadStale, "the application rewrote the legacy key in place: " + why
	}
	return v, ""
}

func (s *Sim) deleting(id string) bool {
	st, _ := s.model.State(id)
	for _, e := range st.Events {
		if e.Kind == "delete" {
			return true
		}
	}
	return false
}

// fetch resolves and reads one object of the photo's current row; with
// presigned, a user-scoped object through a presigned download URL, as the
// application hands a browser (a legacy key is read as before: the
// application presigns keys of its own layout only).
func (s *Sim) fetch(ctx context.Context, id string, k ObjKey, presigned bool) (hash, key string, err error) {
	row, err := s.loadRow(ctx, id)
	if err != nil {
		return "", "", err
	}
	if row.OwnerID == nil {
		return "", "", errNoOwner
	}
	owner := *row.OwnerID
	var r storage.Resolved
	if k.Kind == keylayout.KindAnimation {
		r, err = s.store(ctx).ResolveAnimation(ctx, owner, row.storageRow(), k.AnimID, k.Suffix)
	} else {
		r, err = s.store(ctx).Resolve(ctx, owner, row.storageRow(), k.Kind)
	}
	if err != nil {
		return "", "", err
	}
	if presigned && !r.Legacy {
		h, err := s.download(ctx, owner, r.Key)
		return h, r.Key, err
	}
	obj, err := s.store(ctx).GetResolved(ctx, owner, r)
	if err != nil {
		return "", r.Key, err
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		return "", r.Key, err
	}
	return hashOf(b), r.Key, nil
}

// --- writes ---------------------------------------------------------------

func (s *Sim) user(r *rand.Rand) string {
	users := s.model.Users()
	return users[r.IntN(len(users))]
}

// createPhoto uploads a new photo's objects under users/{owner}/ and then
// inserts its row with the user-scoped keys (Phase 1).
func (s *Sim) createPhoto(ctx context.Context, r *rand.Rand, presigned bool) (bool, error) {
	owner := s.user(r)
	p := &Photo{ID: newID(r), Owner: &owner, Origin: OriginApp, Objects: map[ObjKey]*Object{}}
	exts := []string{"jpg", "png", "heic", "webp"}
	keys := []ObjKey{{Kind: keylayout.KindOriginal, Ext: exts[r.IntN(len(exts))]}}
	if r.IntN(10) < 7 {
		keys = append(keys, ObjKey{Kind: keylayout.KindRestored, Ext: "png"})
	}
	if r.IntN(10) < 8 {
		keys = append(keys, ObjKey{Kind: keylayout.KindThumbnail})
	}
	if r.IntN(10) < 3 {
		keys = append(keys, ObjKey{Kind: keylayout.KindMetadata})
	}
	for i := range r.IntN(3) {
		keys = append(keys, ObjKey{Kind: keylayout.KindAnimation, AnimID: newID(r), Suffix: []string{"loop", "hd", "boomerang"}[i%3]})
	}
	row := Row{ID: p.ID, OwnerID: &owner}
	for _, k := range keys {
		body := randomBytes(r, k.Kind)
		start := time.Now()
		var key string
		var err error
		err = s.retryApp(ctx, func() error {
			var err error
			if k.Kind == keylayout.KindOriginal && presigned {
				key, err = s.postOriginal(ctx, owner, p.ID, k, body)
			} else {
				key, err = s.store(ctx).Put(ctx, owner, k.Ref(p.ID), bytes.NewReader(body), int64(len(body)), contentType(k))
			}
			return err
		})
		if err != nil {
			s.removeAbandoned(ctx, func(st *storage.Service) error {
				_, err := st.DeletePhoto(context.WithoutCancel(ctx), owner, p.ID)
				return err
			})
			return false, fmt.Errorf("upload %s: %w", k, err)
		}
		p.Objects[k] = &Object{AppUser: true, Versions: []Version{{Hash: hashOf(body), Start: start, End: time.Now()}}}
		switch k.Kind {
		case keylayout.KindOriginal:
			row.Original = key
		case keylayout.KindRestored:
			row.Processed = &key
		case keylayout.KindThumbnail:
			row.Thumbnail = &key
		}
	}
	if _, err := s.deps.Pool.Exec(ctx, `INSERT INTO photos (id, owner_id, original_key, processed_key, thumbnail_key) VALUES ($1, $2, $3, $4, $5)`,
		row.ID, row.OwnerID, row.Original, row.Processed, row.Thumbnail); err != nil {
		s.removeAbandoned(ctx, func(st *storage.Service) error {
			_, err := st.DeletePhoto(context.WithoutCancel(ctx), owner, p.ID)
			return err
		})
		return false, fmt.Errorf("insert row: %w", err)
	}
	s.model.addPhoto(p)
	return true, nil
}

// postOriginal uploads an original as a browser does, with a presigned POST,
// and confirms it with a HEAD as the application does.
func (s *Sim) postOriginal(ctx context.Context, owner, photoID string, k ObjKey, body []byte) (string, error) {
	up, err := s.store(ctx).PresignUpload(ctx, owner, storage.UploadRequest{PhotoID: photoID, ContentType: contentType(k), Ext: k.Ext})
	if err != nil {
		return "", err
	}
	res, err := up.Post(ctx, s.deps.HTTP, bytes.NewReader(body), int64(len(body)), nil)
	if err != nil {
		return "", err
	}
	if !res.OK() {
		if res.Status >= 500 {
			return "", fmt.Errorf("presigned POST: %s: %w", res, errUnavailable)
		}
		return "", fmt.Errorf("presigned POST: %s", res)
	}
	info, err := s.store(ctx).Head(ctx, owner, up.Key)
	if err != nil {
		return "", err
	}
	if info.Size != int64(len(body)) {
		return "", fmt.Errorf("presigned POST stored %d bytes, sent %d", info.Size, len(body))
	}
	return up.Key, nil
}

// legacyObjects lists the objects of a legacy row: its key columns and the
// metadata and animations of its job, as they are in the model's legacy
// store.
func (s *Sim) legacyObjects(lr LegacyRow) (map[ObjKey]string, error) {
	l, err := keylayout.ParseLegacy(lr.Original)
	if err != nil {
		return nil, err
	}
	out := map[ObjKey]string{}
	s.model.mu.RLock()
	defer s.model.mu.RUnlock()
	add := func(key string) {
		pl, err := keylayout.ParseLegacy(key)
		if err != nil {
			return
		}
		out[ObjKeyOfLegacy(pl)] = key
	}
	add(lr.Original)
	if lr.Processed != nil {
		add(*lr.Processed)
	}
	if lr.Thumbnail != nil {
		add(*lr.Thumbnail)
	}
	meta := keylayout.LegacyMetadataKey(l.JobID)
	if _, ok := s.model.legacy[meta]; ok {
		add(meta)
	}
	prefix := keylayout.LegacyAnimationPrefix(l.JobID)
	for k := range s.model.legacy {
		if strings.HasPrefix(k, prefix) {
			add(k)
		}
	}
	return out, nil
}

// duplicate inserts a new row whose key columns are the legacy keys of an
// existing legacy photo (a shared job), after and again before trusting that
// the legacy objects exist: a row inserted while cleanup deleted them would
// point at nothing, and no fix in the migration could prevent that race, so the
// application gives up the duplicate when a post-insert check finds an object
// gone. Once the check after the insert passed, every later deletion of those
// objects is the migration's doing.
func (s *Sim) duplicate(ctx context.Context, r *rand.Rand, ownerless bool) (bool, error) {
	src := s.model.pick(r.IntN, func(p *Photo) bool {
		return (p.Origin == OriginSeeded || p.Origin == OriginLegacySeeded) && p.Legacy.Original != "" && !s.model.inPlace[p.JobID]
	})
	if src == nil {
		return false, nil
	}
	s.model.mu.RLock()
	lr := src.Legacy
	s.model.mu.RUnlock()
	objs, err := s.legacyObjects(lr)
	if err != nil {
		return false, err
	}
	present := func() (bool, error) {
		for _, key := range objs {
			if _, err := s.deps.Objects.Head(ctx, key); errors.Is(err, objstore.ErrNotFound) {
				return false, nil
			} else if err != nil {
				return false, err
			}
		}
		return true, nil
	}
	if ok, err := present(); !ok || err != nil {
		s.stats.note("duplicate_source_gone")
		return false, err
	}
	p := &Photo{ID: newID(r), Origin: OriginDuplicate, JobID: src.JobID, Legacy: lr, Objects: map[ObjKey]*Object{}}
	if !ownerless {
		owner := s.user(r)
		p.Owner = &owner
	}
	now := time.Now()
	for k, key := range objs {
		h, _ := s.model.LegacyHash(key)
		p.Objects[k] = &Object{Legacy: key, Versions: []Version{{Hash: h, Start: now, End: now}}}
	}
	if _, err := s.deps.Pool.Exec(ctx, `INSERT INTO photos (id, owner_id, original_key, processed_key, thumbnail_key) VALUES ($1, $2, $3, $4, $5)`,
		p.ID, p.Owner, lr.Original, lr.Processed, lr.Thumbnail); err != nil {
		return false, fmt.Errorf("insert duplicate row: %w", err)
	}
	// After the insert, the application checks that cleanup has not claimed
	// the shared objects (the migration's contract, docs/phase1.md): cleanup
	// reads the rows again after committing its claim, so either it sees this
	// row and keeps the objects, or this check sees its claim.
	keys := make([]string, 0, len(objs))
	for _, key := range objs {
		keys = append(keys, key)
	}
	claimed, cerr := ledger.FromPool(s.deps.Pool).PhotoLegacyKeysClaimed(ctx, keys)
	if ok, err := present(); !ok || err != nil || claimed || cerr != nil {
		// Cleanup claimed or deleted a shared object: withdraw the row.
		_, derr := s.deps.Pool.Exec(context.WithoutCancel(ctx), `DELETE FROM photos WHERE id = $1`, p.ID)
		s.stats.note("duplicate_withdrawn_raced_cleanup")
		return false, errors.Join(err, cerr, derr)
	}
	if !s.model.addPhotoUnlessInPlace(p) {
		// The source's legacy objects were claimed for rewrites in place
		// meanwhile: the bytes this row shares may not be those its model
		// holds. (A real application sharing a job would read them; the
		// model cannot follow two rows through one rewrite.)
		_, derr := s.deps.Pool.Exec(context.WithoutCancel(ctx), `DELETE FROM photos WHERE id = $1`, p.ID)
		s.stats.note("duplicate_withdrawn_rewritten_in_place")
		return false, derr
	}
	return true, nil
}

// insertLegacySeeded writes a brand-new job's legacy objects straight to the
// bucket (the pre-Phase-1 application's data arriving late, a restore from
// backup) and inserts its legacy row.
func (s *Sim) insertLegacySeeded(ctx context.Context, r *rand.Rand) (bool, error) {
	owner := s.user(r)
	job := newID(r)
	p := &Photo{ID: newID(r), Owner: &owner, Origin: OriginLegacySeeded, JobID: job, Objects: map[ObjKey]*Object{}}
	lr := LegacyRow{Original: "uploaded/" + job + ".jpg"}
	keys := []string{lr.Original}
	if r.IntN(10) < 7 {
		k := "restored/" + job + "/" + newID(r) + ".png"
		lr.Processed = &k
		keys = append(keys, k)
	}
	if r.IntN(10) < 8 {
		k := "thumbnails/" + job + ".jpg"
		lr.Thumbnail = &k
		keys = append(keys, k)
	}
	if r.IntN(10) < 4 {
		keys = append(keys, keylayout.LegacyMetadataKey(job))
	}
	if r.IntN(10) < 3 {
		keys = append(keys, keylayout.LegacyAnimationKey(job, newID(r), "loop"))
	}
	p.Legacy = lr
	// Some late rows have real object shapes, drawn from a stream of their
	// own so that the draws of r stay as they were for earlier seeds.
	shaped := -1
	if n := s.large.Add(1); n <= int64(s.cfg.LargeWrites) {
		shaped = int(n)
		if shaped%2 == 1 {
			keys = append(keys, keylayout.LegacyAnimationKey(job, newID(s.rng(0x1a59e000+uint64(n))), "hd"))
		}
	}
	for j, key := range keys {
		l, err := keylayout.ParseLegacy(key)
		if err != nil {
			return false, err
		}
		k := ObjKeyOfLegacy(l)
		if shaped >= 0 {
			// The original (even) or the added animation (odd) is large.
			sr := s.rng(0x1a59e000 + uint64(shaped)*64 + uint64(j))
			body := randomBytes(sr, k.Kind)
			if (shaped%2 == 0 && k.Kind == keylayout.KindOriginal) || (shaped%2 == 1 && j == len(keys)-1) {
				body = largeBody(sr)
			}
			h, err := s.putShaped(ctx, key, k, body, shaped+j)
			if err != nil {
				return false, err
			}
			now := time.Now()
			p.Objects[k] = &Object{Legacy: key, Versions: []Version{{Hash: h, Start: now, End: now}}}
			continue
		}
		body := randomBytes(r, k.Kind)
		// The pre-Phase-1 application set content headers on some objects:
		// a migrated copy must carry them.
		h := Headers{ContentType: contentType(k), Metadata: map[string]string{"restored-from": "backup"},
			CacheControl: "private, max-age=31536000, immutable"}
		if k.Kind == keylayout.KindOriginal {
			h.ContentDisposition = `attachment; filename="photo.jpg"`
			h.ContentLanguage = "en"
		}
		if _, err := s.deps.Objects.Client().PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s.deps.Objects.Bucket()), Key: aws.String(key), Body: bytes.NewReader(body),
			ContentType: aws.String(h.ContentType), CacheControl: aws.String(h.CacheControl), Metadata: h.Metadata,
			ContentDisposition: optional(h.ContentDisposition), ContentLanguage: optional(h.ContentLanguage),
		}); err != nil {
			return false, fmt.Errorf("seed legacy %s: %w", key, err)
		}
		s.model.addLegacy(key, hashOf(body))
		s.model.addHeaders(key, h)
		now := time.Now()
		p.Objects[k] = &Object{Legacy: key, Versions: []Version{{Hash: hashOf(body), Start: now, End: now}}}
	}
	if _, err := s.deps.Pool.Exec(ctx, `INSERT INTO photos (id, owner_id, original_key, processed_key, thumbnail_key) VALUES ($1, $2, $3, $4, $5)`,
		p.ID, p.Owner, lr.Original, lr.Processed, lr.Thumbnail); err != nil {
		return false, fmt.Errorf("insert legacy row: %w", err)
	}
	s.model.addPhoto(p)
	return true, nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// lockPhoto picks a live photo with a valid owner satisfying ok and locks it
// for one writer. The caller must unlock it.
func (s *Sim) lockPhoto(r *rand.Rand, ok func(p *Photo) bool) *Photo {
	return s.lockWhere(r, func(p *Photo) bool { return ownerOK(p) && p.Origin != OriginProblem && ok(p) })
}

// lockWhere picks a live photo satisfying ok and locks it for one writer,
// then asks ok again: the writer that held the lock may have changed the
// photo (deleted it, taken its owner away) between the pick and the lock.
// The caller must unlock it.
func (s *Sim) lockWhere(r *rand.Rand, ok func(p *Photo) bool) *Photo {
	for range 8 {
		p := s.model.pick(r.IntN, func(p *Photo) bool { return !p.Deleted && ok(p) })
		if p == nil {
			return nil
		}
		if !p.lock.TryLock() {
			continue
		}
		s.model.mu.RLock()
		still := !p.Deleted && ok(p)
		s.model.mu.RUnlock()
		if !still {
			p.lock.Unlock()
			continue
		}
		return p
	}
	return nil
}

// lockTarget is lockPhoto aimed, half of the time for the operations
// Config.Aimed names, at a photo the migration is moving right now
// (Deps.InFlight), so that the application's writes land inside a worker's
// move (between its copy and its swap) more than by chance.
func (s *Sim) lockTarget(ctx context.Context, r *rand.Rand, op Op, ok func(p *Photo) bool) (_ *Photo, aimed bool) {
	if s.deps.InFlight != nil && s.cfg.Aimed[op] && r.IntN(2) == 0 {
		ids := s.deps.InFlight(ctx)
		for range min(len(ids), 8) {
			s.model.mu.RLock()
			p := s.model.photos[ids[r.IntN(len(ids))]]
			good := p != nil && !p.Deleted && ownerOK(p) && p.Origin != OriginProblem && ok(p)
			s.model.mu.RUnlock()
			if good && p.lock.TryLock() {
				s.model.mu.RLock()
				still := !p.Deleted && ownerOK(p) && ok(p)
				s.model.mu.RUnlock()
				if still {
					s.stats.note("write_aimed_at_a_photo_in_flight")
					return p, true
				}
				p.lock.Unlock()
			}
		}
	}
	return s.lockPhoto(r, ok), false
}

// inPlaceTarget is an object of a photo that the application reads from its
// legacy key, and that key.
type inPlaceTarget struct {
	k   ObjKey
	key string
}

// inPlaceTargets lists the live objects of p whose key column holds their
// legacy key, leaving out objects with real object shapes (tags, Expires,
// Content-Encoding: the application's write would not set them again).
func (s *Sim) inPlaceTargets(st PhotoState, row Row) []inPlaceTarget {
	var out []inPlaceTarget
	for _, o := range st.Objects {
		if !o.Live() || o.Legacy == "" {
			continue
		}
		var col *string
		switch o.Key.Kind {
		case keylayout.KindOriginal:
			col = &row.Original
		case keylayout.KindRestored, keylayout.KindThumbnail:
			ptr, _ := row.column(o.Key.Kind)
			col = *ptr
		default:
			continue // animations and metadata: no column, Resolve decides
		}
		if col == nil || *col != o.Legacy {
			continue
		}
		if h, ok := s.model.LegacyHeaders(o.Legacy); ok && (len(h.Tags) > 0 || h.Expires != "" || h.ContentEncoding != "") {
			continue
		}
		out = append(out, inPlaceTarget{k: o.Key, key: o.Legacy})
	}
	return out
}

// rewriteInPlace is an application that writes new bytes over the key its
// row points to while that key is still legacy: an application version from
// before Phase 1 (docs/guarantees.md: Phase 1 itself never writes a legacy
// key), regenerating a thumbnail, a restore or the original. It writes the
// key the row holds, not what Resolve reads (a worker's copy not yet swapped
// in is read first: ExcuseInPlace), one to four times, a moment apart (a
// user editing; 4 to 11 times, 10-60 ms apart, when aimed at a photo in
// flight), each write followed by a read of the row: once the row
// points elsewhere (the worker swapped it), the application writes its bytes
// at the key the row now points to and stops.
// What the migration owes it (DESIGN.md, worker invariant 1 and "Pin the
// source"): a rewrite made before the worker's last read of the source ends
// in the copy; ExcuseInPlace names the one window where it does not.
func (s *Sim) rewriteInPlace(ctx context.Context, r *rand.Rand) (bool, error) {
	p, aimed := s.lockTarget(ctx, r, OpRewriteInPlace, func(p *Photo) bool {
		return (p.Origin == OriginSeeded || p.Origin == OriginLegacySeeded) && p.JobID != ""
	})
	if p == nil {
		return false, nil
	}
	defer p.lock.Unlock()
	row, err := s.loadRow(ctx, p.ID)
	if err != nil {
		return false, err
	}
	st, _ := s.model.State(p.ID)
	targets := s.inPlaceTargets(st, row)
	if len(targets) == 0 {
		return false, nil
	}
	t := targets[r.IntN(len(targets))]
	if !s.model.claimInPlace(p) {
		s.stats.note("in_place_skipped_shared_job")
		return false, nil
	}
	owner := *st.Owner
	h, _ := s.model.LegacyHeaders(t.key)
	if h.ContentType == "" {
		h.ContentType = contentType(t.k)
	}
	// Aimed at a photo in flight, the writes come faster and for longer
	// (about half a second): the windows that matter, between a copy and
	// the worker's next read of its source, last milliseconds.
	writes, gap := 1+r.IntN(4), 20+r.IntN(150)
	if aimed {
		writes, gap = 4+r.IntN(8), 10+r.IntN(50)
	}
	for n := range writes {
		if n > 0 {
			time.Sleep(time.Duration(gap) * time.Millisecond)
		}
		moved, err := s.writeInPlace(ctx, p, t, owner, h, randomBytes(r, t.k.Kind))
		if err != nil || moved {
			return err == nil, err
		}
	}
	return true, nil
}

// writeInPlace writes body over t's legacy key, then reads the row: if its
// column no longer holds that key, it writes body at the key the column
// holds now (moved). The model's version spans both writes.
func (s *Sim) writeInPlace(ctx context.Context, p *Photo, t inPlaceTarget, owner string, h Headers, body []byte) (moved bool, _ error) {
	hash := hashOf(body)
	s.model.beginInPlace(p, t.k, hash)
	out, err := s.deps.Objects.Client().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.deps.Objects.Bucket()), Key: aws.String(t.key), Body: bytes.NewReader(body),
		ContentType: aws.String(h.ContentType), CacheControl: optional(h.CacheControl), Metadata: h.Metadata,
		ContentDisposition: optional(h.ContentDisposition), ContentLanguage: optional(h.ContentLanguage),
	})
	if err != nil {
		// Landed or not: look, and keep the version only if it did.
		info, herr := s.deps.Objects.Head(context.WithoutCancel(ctx), t.key)
		b, gerr := s.deps.Objects.Get(context.WithoutCancel(ctx), t.key)
		if herr == nil && gerr == nil && hashOf(b) == hash {
			s.model.endInPlace(p, t.k, info.ETag, false)
			return false, fmt.Errorf("in-place write reported a failure but landed: %w", err)
		}
		s.model.forgetWrite(p, t.k)
		return false, fmt.Errorf("write %s in place: %w", t.key, err)
	}
	etag := aws.ToString(out.ETag)
	row, err := s.loadRow(ctx, p.ID)
	if err != nil {
		s.model.endInPlace(p, t.k, etag, false)
		return false, err
	}
	cur := &row.Original
	if t.k.Kind != keylayout.KindOriginal {
		ptr, _ := row.column(t.k.Kind)
		cur = *ptr
	}
	if cur != nil && *cur == t.key {
		s.model.endInPlace(p, t.k, etag, false)
		return false, nil
	}
	if cur == nil || !keylayout.IsUserScoped(*cur) {
		s.model.endInPlace(p, t.k, etag, false)
		return true, fmt.Errorf("photo %s: %s now holds %v, neither its legacy key nor a user-scoped one", p.ID, t.k, cur)
	}
	// The worker swapped the row since it was read: the application's
	// bytes go where the row points now (what a copy made before this
	// write holds is older).
	s.stats.note("in_place_followed_the_swap")
	if err := s.deps.Storage.PutKey(ctx, owner, *cur, bytes.NewReader(body), int64(len(body)), h.ContentType); err != nil {
		s.model.endInPlace(p, t.k, etag, false)
		return true, fmt.Errorf("photo %s: write %s after the swap: %w", p.ID, *cur, err)
	}
	s.model.endInPlace(p, t.k, etag, true)
	return true, nil
}

// rewritable are the kinds the application rewrites: a new restore, a new
// thumbnail, edited metadata. (It never rewrites a user's original.)
var rewritable = []keylayout.Kind{keylayout.KindRestored, keylayout.KindThumbnail, keylayout.KindMetadata}

// rewrite writes new bytes for one object of a photo (or adds a restore,
// thumbnail or metadata it lacks), as the application does: under
// users/{owner}/ with the StorageService, at the key the migration would copy
// to; then, for an object a key column records that does not hold that key
// yet (a legacy key, or NULL), it points the column there by compare-and-set
// on the value it read, as an application with optimistic locking would.
func (s *Sim) rewrite(ctx context.Context, r *rand.Rand) (Op, bool, error) {
	p, _ := s.lockTarget(ctx, r, OpRewriteLegacy, func(*Photo) bool { return true })
	if p == nil {
		return OpRewriteLegacy, false, nil
	}
	defer p.lock.Unlock()
	st, _ := s.model.State(p.ID)
	kind := rewritable[r.IntN(len(rewritable))]
	k := ObjKey{Kind: kind}
	if kind == keylayout.KindRestored {
		k.Ext = "png"
	}
	for _, o := range st.Objects {
		if o.Key.Kind == kind && o.Live() {
			k = o.Key
		}
	}
	owner := *st.Owner
	row, err := s.loadRow(ctx, p.ID)
	if err != nil {
		return OpRewriteLegacy, false, err
	}
	op := OpRewriteUser
	if row.legacy() {
		op = OpRewriteLegacy
	}
	body := randomBytes(r, k.Kind)
	target := k.UserKey(owner, p.ID)
	s.model.beginWrite(p, k, hashOf(body), "")
	if err := s.retryApp(ctx, func() error {
		return s.store(ctx).PutKey(ctx, owner, target, bytes.NewReader(body), int64(len(body)), contentType(k))
	}); err != nil {
		return op, false, s.settleUncertain(ctx, p, k, owner, target, body, err)
	}
	if k.Kind == keylayout.KindMetadata {
		s.model.endWrite(p, k, true)
		return op, true, nil
	}
	// The write is visible once the row points at it, or while the column
	// still holds the legacy key (Resolve then prefers the user-scoped key,
	// which exists). If neither holds when the column cannot be pointed there
	// (the run ends mid-way, the row keeps changing), the application gives
	// up, removes what it uploaded, and the model forgets the version.
	pointed := false
	defer func() {
		if ptr, _ := row.column(k.Kind); pointed || (*ptr != nil && !keylayout.IsUserScoped(**ptr)) {
			s.model.endWrite(p, k, true)
			return
		}
		s.removeAbandoned(ctx, func(st *storage.Service) error { return st.DeleteKey(context.WithoutCancel(ctx), owner, target) })
		s.model.forgetWrite(p, k)
	}()
	// Point the key column at the user-scoped key, compare-and-set on the
	// value read (the worker may swap it in between; then it already holds
	// this key).
	for range 5 {
		ptr, col := row.column(k.Kind)
		cur := *ptr
		if cur != nil && *cur == target {
			pointed = true
			return op, true, nil
		}
		tag, err := s.deps.Pool.Exec(ctx, `UPDATE photos SET `+col+` = $2, updated_at = now() WHERE id = $1 AND `+col+` IS NOT DISTINCT FROM $3 AND owner_id = $4`,
			p.ID, target, cur, owner)
		if err != nil {
			return op, false, err
		}
		if tag.RowsAffected() == 1 {
			pointed = true
			return op, true, nil
		}
		if row, err = s.loadRow(ctx, p.ID); err != nil {
			return op, false, err
		}
	}
	return op, false, fmt.Errorf("photo %s: could not point %s at %s", p.ID, k, target)
}

// settleUncertain ends a write whose Put failed: S3 writes are atomic, so the
// key holds either the new bytes or what it held before. It reads the key
// back; if the new bytes are there the write completed (recorded as such),
// otherwise the model forgets the version it began.
//
// The read back goes through the direct StorageService even for a proxied
// client (proxied.go): it is the harness learning which outcome happened,
// and must not itself be failed by the fault proxy.
func (s *Sim) settleUncertain(ctx context.Context, p *Photo, k ObjKey, owner, key string, body []byte, cause error) error {
	obj, err := s.deps.Storage.GetKey(context.WithoutCancel(ctx), owner, key)
	if err == nil {
		b, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		if hashOf(b) == hashOf(body) {
			s.model.endWrite(p, k, true)
			return fmt.Errorf("%w: %w", errLanded, cause)
		}
	}
	s.model.forgetWrite(p, k)
	return cause
}

// deleteAnimation deletes one animation of a photo whose original is
// user-scoped (the application may not delete legacy objects).
func (s *Sim) deleteAnimation(ctx context.Context, r *rand.Rand) (bool, error) {
	p := s.lockPhoto(r, func(p *Photo) bool {
		for k, o := range p.Objects {
			if k.Kind == keylayout.KindAnimation && o.Live() {
				return true
			}
		}
		return false
	})
	if p == nil {
		return false, nil
	}
	defer p.lock.Unlock()
	row, err := s.loadRow(ctx, p.ID)
	if err != nil {
		return false, err
	}
	if !keylayout.IsUserScoped(row.Original) {
		return false, nil
	}
	st, _ := s.model.State(p.ID)
	var anims []ObjKey
	for _, o := range st.Objects {
		if o.Key.Kind == keylayout.KindAnimation && o.Live() {
			anims = append(anims, o.Key)
		}
	}
	k := anims[r.IntN(len(anims))]
	s.model.beginWrite(p, k, "", "")
	if err := s.deps.Storage.Delete(ctx, *st.Owner, k.Ref(p.ID)); err != nil {
		// Deleted or not: look, and record what is true.
		if _, gerr := s.deps.Storage.Get(context.WithoutCancel(ctx), *st.Owner, k.Ref(p.ID)); errors.Is(gerr, storage.ErrNotFound) {
			s.model.endWrite(p, k, false)
			return true, nil
		}
		s.model.mu.Lock()
		o := p.Objects[k]
		o.Versions = o.Versions[:len(o.Versions)-1]
		s.model.mu.Unlock()
		return false, err
	}
	s.model.endWrite(p, k, false)
	return true, nil
}

// deletePhoto deletes the row, then every object of the photo under the
// owner's prefix. Legacy objects stay: the migration's cleanup owns them.
func (s *Sim) deletePhoto(ctx context.Context, r *rand.Rand) (bool, error) {
	p := s.lockPhoto(r, func(*Photo) bool { return true })
	if p == nil {
		return false, nil
	}
	defer p.lock.Unlock()
	st, _ := s.model.State(p.ID)
	ev := s.model.beginEvent(p, "delete")
	defer s.model.endEvent(p, ev)
	tag, err := s.deps.Pool.Exec(ctx, `DELETE FROM photos WHERE id = $1`, p.ID)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() != 1 {
		return false, fmt.Errorf("photo %s: row already gone", p.ID)
	}
	s.model.mu.Lock()
	p.Deleted = true
	now := time.Now()
	for _, o := range p.Objects {
		o.Versions = append(o.Versions, Version{Hash: "", Start: now, End: now})
	}
	s.model.mu.Unlock()
	if err := s.deletePhotoObjects(ctx, *st.Owner, p.ID); err != nil {
		return true, fmt.Errorf("row deleted, objects not: %w", err)
	}
	return true, nil
}

// deletePhotoObjects deletes every object of a photo under owner's prefix,
// as the application does, retrying a failure (the application's deletes
// are not allowed to be forgotten).
func (s *Sim) deletePhotoObjects(ctx context.Context, owner, photoID string) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
		if _, err = s.deps.Storage.DeletePhoto(context.WithoutCancel(ctx), owner, photoID); err == nil {
			return nil
		}
	}
	return err
}

// changeOwner moves a photo to another user (an account merge): the
// application copies every object it keeps under the old owner's prefix to
// the new owner's, then in one transaction changes owner_id and points the
// user-scoped key columns at the new copies (compare-and-set on the row it
// read), then deletes the old owner's objects. Legacy keys stay as they are.
func (s *Sim) changeOwner(ctx context.Context, r *rand.Rand) (bool, error) {
	p := s.lockPhoto(r, func(*Photo) bool { return true })
	if p == nil {
		return false, nil
	}
	defer p.lock.Unlock()
	st, _ := s.model.State(p.ID)
	oldOwner := *st.Owner
	newOwner := s.user(r)
	if newOwner == oldOwner {
		return false, nil
	}
	ev := s.model.beginEvent(p, "change_owner")
	defer s.model.endEvent(p, ev)
	for range 5 {
		row, err := s.loadRow(ctx, p.ID)
		if err != nil {
			return false, err
		}
		if row.OwnerID == nil || *row.OwnerID != oldOwner {
			return false, fmt.Errorf("photo %s: owner is %v, the model says %s", p.ID, row.OwnerID, oldOwner)
		}
		derivedUser := keylayout.IsUserScoped(row.Original)
		var copied []ObjKey
		for _, o := range st.Objects {
			if !o.Live() {
				continue
			}
			userScoped := false
			switch o.Key.Kind {
			case keylayout.KindOriginal:
				userScoped = keylayout.IsUserScoped(row.Original)
			case keylayout.KindRestored, keylayout.KindThumbnail:
				ptr, _ := row.column(o.Key.Kind)
				userScoped = *ptr != nil && keylayout.IsUserScoped(**ptr)
			default:
				userScoped = derivedUser || o.AppUser
			}
			if !userScoped {
				continue
			}
			obj, err := s.deps.Storage.Get(ctx, oldOwner, o.Key.Ref(p.ID))
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return false, err
			}
			b, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			if err != nil {
				return false, err
			}
			if _, err := s.deps.Storage.Put(ctx, newOwner, o.Key.Ref(p.ID), bytes.NewReader(b), int64(len(b)), obj.ContentType); err != nil {
				return false, err
			}
			copied = append(copied, o.Key)
		}
		moved := func(k *string) *string {
			if k == nil || !keylayout.IsUserScoped(*k) {
				return k
			}
			u, err := keylayout.ParseUserKey(*k)
			if err != nil {
				return k
			}
			u.UserID = newOwner
			nk := u.Key()
			return &nk
		}
		tag, err := s.deps.Pool.Exec(ctx, `
UPDATE photos SET owner_id = $2, original_key = $3, processed_key = $4, thumbnail_key = $5, updated_at = now()
 WHERE id = $1 AND owner_id = $6 AND original_key = $7 AND processed_key IS NOT DISTINCT FROM $8 AND thumbnail_key IS NOT DISTINCT FROM $9`,
			p.ID, newOwner, *moved(&row.Original), moved(row.Processed), moved(row.Thumbnail), oldOwner, row.Original, row.Processed, row.Thumbnail)
		if err != nil {
			return false, err
		}
		if tag.RowsAffected() == 0 {
			continue // the worker swapped the row meanwhile: copy again from it
		}
		s.model.mu.Lock()
		p.Owner = &newOwner
		p.PrevOwners = append(p.PrevOwners, oldOwner)
		for _, k := range copied {
			p.Objects[k].AppUser = true
		}
		s.model.mu.Unlock()
		if err := s.deletePhotoObjects(ctx, oldOwner, p.ID); err != nil {
			return true, fmt.Errorf("owner changed, old copies not deleted: %w", err)
		}
		return true, nil
	}
	_, _ = s.deps.Storage.DeletePhoto(context.WithoutCancel(ctx), newOwner, p.ID)
	return false, fmt.Errorf("photo %s: its row kept changing during the owner change", p.ID)
}

// legacy reports whether any key column of the row is outside users/.
func (r Row) legacy() bool {
	for _, k := range []*string{&r.Original, r.Processed, r.Thumbnail} {
		if k != nil && !keylayout.IsUserScoped(*k) {
			return true
		}
	}
	return false
}
