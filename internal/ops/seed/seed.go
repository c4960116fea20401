// Package seed creates realistic legacy data for development, tests, the demo
// and benchmarks: photos rows in the flat layout and their objects in S3.
//
// It also owns the development copy of the application's photos table. The
// migration itself never creates or alters that table in a real database.
package seed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// PhotosTableDDL is the application's photos table as the migration plan
// describes it. owner_id is text here so that tests can store malformed owners.
const PhotosTableDDL = `
CREATE TABLE IF NOT EXISTS photos (
    id            uuid PRIMARY KEY,
    owner_id      text,
    original_key  text NOT NULL,
    processed_key text,
    thumbnail_key text,
    status        text NOT NULL DEFAULT 'ready',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
)`

// EnsurePhotosTable creates the development photos table if it is missing.
func EnsurePhotosTable(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, PhotosTableDDL); err != nil {
		return fmt.Errorf("create development photos table: %w", err)
	}
	return nil
}

// Options shape the seeded data.
type Options struct {
	Photos        int
	Owners        int     // distinct owners (default Photos/4, at least 1)
	OwnerlessRate float64 // share of photos without an owner (default 0.05)
	OrphanRate    float64 // share of photos with an unreferenced restore (default 0.03)
	Large         int     // photos whose original is LargeSize bytes
	LargeSize     int64
	MinSize       int // small object sizes, bytes (default 1 KiB to 4 KiB)
	MaxSize       int
	Seed          uint64 // same seed, same data
	Concurrency   int    // concurrent uploads (default 16)
	// Progress, if set, is called after each batch with photos done so far.
	Progress func(done int)
}

func (o *Options) defaults() {
	if o.Owners <= 0 {
		o.Owners = max(1, o.Photos/4)
	}
	if o.OwnerlessRate == 0 {
		o.OwnerlessRate = 0.05
	}
	if o.OrphanRate == 0 {
		o.OrphanRate = 0.03
	}
	if o.MinSize <= 0 {
		o.MinSize = 1 << 10
	}
	if o.MaxSize < o.MinSize {
		o.MaxSize = 4 << 10
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Large > 0 && o.LargeSize <= 0 {
		o.LargeSize = 64 << 20
	}
}

// Result counts what was created.
type Result struct {
	Photos, Ownerless, Objects, Orphans, Animations, Metadata int
	Bytes                                                     int64
}

// Photo is one seeded photo row.
type Photo struct {
	ID, JobID    string
	OwnerID      *string
	Original     string
	Processed    *string
	Thumbnail    *string
	Status       string
	CreatedAt    time.Time
	Objects      []Object // every object belonging to the photo, referenced or not
	OrphanObject *Object  // an unreferenced restore under restored/{job}/, if any
}

// Object is one seeded S3 object.
type Object struct {
	Key         string
	Size        int64
	ContentType string
	Metadata    map[string]string
	Tagging     string
	Checksum    types.ChecksumAlgorithm
	seed        uint64
	json        []byte // the body of a metadata object
}

// Body returns the object's deterministic content, seekable so the SDK can
// compute a checksum before sending it over plain HTTP.
func (o Object) Body() io.ReadSeeker {
	return &detReader{seed: o.seed, size: o.Size}
}

// detReader yields size pseudo-random bytes, the same for the same seed, at any
// offset, without holding them in memory.
type detReader struct {
	seed, off uint64
	size      int64
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (d *detReader) Read(p []byte) (int, error) {
	if int64(d.off) >= d.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), d.size-int64(d.off))
	for i := int64(0); i < n; i++ {
		pos := d.off + uint64(i)
		p[i] = byte(splitmix(d.seed^(pos>>3)) >> (8 * (pos & 7)))
	}
	d.off += uint64(n)
	return int(n), nil
}

func (d *detReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = int64(d.off) + offset
	case io.SeekEnd:
		abs = d.size + offset
	}
	if abs < 0 {
		return 0, fmt.Errorf("seek to %d", abs)
	}
	d.off = uint64(abs)
	return abs, nil
}

var exts = []struct {
	ext, contentType string
	weight           int
}{
	{"jpg", "image/jpeg", 50}, {"png", "image/png", 20}, {"heic", "image/heic", 12},
	{"webp", "image/webp", 10}, {"JPG", "image/jpeg", 5}, {"gif", "image/gif", 3},
}

var suffixes = []string{"loop", "boomerang", "slow_720p", "hd"}
var cameras = []string{"iphone-15", "pixel-8", "x100v", "scanner"}

func pickExt(r *rand.Rand) (string, string) {
	n := r.IntN(100)
	for _, e := range exts {
		if n < e.weight {
			return e.ext, e.contentType
		}
		n -= e.weight
	}
	return "jpg", "image/jpeg"
}

func newUUID(r *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	u, _ := uuid.FromBytes(b[:])
	u[6] = (u[6] & 0x0f) | 0x40 // version 4
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u.String()
}

// Generate builds the photos deterministically, without touching any server.
func Generate(o Options) []Photo {
	o.defaults()
	r := rand.New(rand.NewPCG(o.Seed, 0x6b6d))
	owners := make([]string, o.Owners)
	for i := range owners {
		owners[i] = newUUID(r)
	}
	base := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	photos := make([]Photo, o.Photos)
	for i := range photos {
		p := Photo{ID: newUUID(r), JobID: newUUID(r), Status: "ready", CreatedAt: base.Add(time.Duration(r.Int64N(int64(4 * 365 * 24 * time.Hour))))}
		if r.Float64() >= o.OwnerlessRate {
			owner := owners[r.IntN(len(owners))]
			p.OwnerID = &owner
		}
		if r.IntN(20) == 0 {
			p.Status = "processing"
		}
		obj := func(key, ct string, size int64) Object {
			ob := Object{Key: key, Size: size, ContentType: ct, seed: r.Uint64(), Checksum: types.ChecksumAlgorithmCrc64nvme}
			if r.IntN(5) == 0 {
				ob.Checksum = types.ChecksumAlgorithmCrc32
			}
			if r.IntN(5) < 2 {
				ob.Metadata = map[string]string{"camera": cameras[r.IntN(len(cameras))], "uploaded-by": "app-v1"}
			}
			if r.IntN(5) == 0 {
				ob.Tagging = "source=legacy&tier=free"
			}
			return ob
		}
		small := func() int64 { return int64(o.MinSize + r.IntN(o.MaxSize-o.MinSize+1)) }
		ext, ct := pickExt(r)
		size := small()
		if i < o.Large {
			size = o.LargeSize
		}
		p.Original = "uploaded/" + p.JobID + "." + ext
		p.Objects = append(p.Objects, obj(p.Original, ct, size))
		if r.IntN(100) < 80 {
			rext, rct := pickExt(r)
			k := "restored/" + p.JobID + "/" + newUUID(r) + "." + rext
			p.Processed = &k
			p.Objects = append(p.Objects, obj(k, rct, small()))
			if r.Float64() < o.OrphanRate*1.25 {
				orphan := obj("restored/"+p.JobID+"/"+newUUID(r)+".png", "image/png", small())
				p.OrphanObject = &orphan
			}
		}
		if r.IntN(100) < 85 {
			k := "thumbnails/" + p.JobID + ".jpg"
			p.Thumbnail = &k
			p.Objects = append(p.Objects, obj(k, "image/jpeg", small()))
		}
		if r.IntN(100) < 30 {
			m := obj("meta/"+p.JobID+".json", "application/json", small())
			m.json = metadataBody(m, p)
			m.Size = int64(len(m.json)) // the object's real size
			p.Objects = append(p.Objects, m)
		}
		if r.IntN(100) < 20 {
			for range 1 + r.IntN(3) {
				k := "animated/" + p.JobID + "/" + newUUID(r) + "_" + suffixes[r.IntN(len(suffixes))] + ".mp4"
				p.Objects = append(p.Objects, obj(k, "video/mp4", small()))
			}
		}
		photos[i] = p
	}
	return photos
}

// metadataBody makes metadata objects real JSON, as the app would write.
func metadataBody(o Object, p Photo) []byte {
	b, _ := json.Marshal(map[string]any{"job_id": p.JobID, "width": 4032, "height": 3024, "pad": make([]byte, max(0, o.Size-120)/2)})
	return b
}

// Run generates the photos and writes their objects and rows. Objects are
// written before their rows, so no seeded row ever points at a missing object.
func Run(ctx context.Context, pool *pgxpool.Pool, store *objstore.Store, o Options) (Result, error) {
	o.defaults()
	if err := EnsurePhotosTable(ctx, pool); err != nil {
		return Result{}, err
	}
	photos := Generate(o)
	var res Result
	var bytes atomic.Int64
	const batch = 500
	for start := 0; start < len(photos); start += batch {
		chunk := photos[start:min(start+batch, len(photos))]
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(o.Concurrency)
		for _, p := range chunk {
			objs := p.Objects
			if p.OrphanObject != nil {
				objs = append(objs[:len(objs):len(objs)], *p.OrphanObject)
			}
			for _, ob := range objs {
				g.Go(func() error {
					if ob.json != nil {
						bytes.Add(int64(len(ob.json)))
						return store.Put(gctx, objstore.PutInput{Key: ob.Key, Body: ob.json, ContentType: ob.ContentType, Metadata: ob.Metadata, Tagging: ob.Tagging, Checksum: ob.Checksum})
					}
					bytes.Add(ob.Size)
					if ob.Size > 8<<20 {
						return store.PutStream(gctx, ob.Key, ob.Body(), ob.Size, ob.ContentType, ob.Metadata)
					}
					body, err := io.ReadAll(ob.Body())
					if err != nil {
						return err
					}
					return store.Put(gctx, objstore.PutInput{Key: ob.Key, Body: body, ContentType: ob.ContentType, Metadata: ob.Metadata, Tagging: ob.Tagging, Checksum: ob.Checksum})
				})
			}
		}
		if err := g.Wait(); err != nil {
			return res, fmt.Errorf("seed objects: %w", err)
		}
		rows := make([][]any, len(chunk))
		for i, p := range chunk {
			rows[i] = []any{p.ID, p.OwnerID, p.Original, p.Processed, p.Thumbnail, p.Status, p.CreatedAt, p.CreatedAt}
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"photos"},
			[]string{"id", "owner_id", "original_key", "processed_key", "thumbnail_key", "status", "created_at", "updated_at"},
			pgx.CopyFromRows(rows)); err != nil {
			return res, fmt.Errorf("seed photos rows: %w", err)
		}
		for _, p := range chunk {
			res.Photos++
			res.Objects += len(p.Objects)
			if p.OwnerID == nil {
				res.Ownerless++
			}
			if p.OrphanObject != nil {
				res.Orphans++
				res.Objects++
			}
			for _, ob := range p.Objects {
				switch ob.ContentType {
				case "video/mp4":
					res.Animations++
				case "application/json":
					res.Metadata++
				}
			}
		}
		if o.Progress != nil {
			o.Progress(res.Photos)
		}
	}
	res.Bytes = bytes.Load()
	return res, nil
}

// CountPhotos counts the rows of the photos table (0 if it does not exist).
func CountPhotos(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('photos') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("look for photos table: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM photos`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count photos: %w", err)
	}
	return n, nil
}
