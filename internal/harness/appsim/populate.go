package appsim

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// PopulateOptions shape the data present before the migration starts.
type PopulateOptions struct {
	// Photos is the number of seeded legacy photos (internal/ops/seed: varied
	// kinds, extensions, content types, metadata, tags, checksums, about 5%
	// without an owner, some orphan restores).
	Photos int
	// Problems is the number of rows of each deliberately broken kind: a
	// legacy original that does not exist (source_missing), an owner id that
	// is not an id (invalid_owner_id), a legacy key the layout does not know
	// (unrecognised_legacy_key). 0 creates none.
	Problems int
	// Shaped is the number of legacy photos with real object shapes: an
	// original or an animation of 6-12 MiB (above the soak's lowered
	// multipart threshold, so the workers copy it part by part under the
	// faults), and on every object of the photo Expires, Cache-Control,
	// Content-Encoding (on some), tags and a CRC32C or SHA256 checksum.
	Shaped int
}

// Expected failure reasons of the deliberately broken rows.
const (
	ExpectSourceMissing   = "source_missing"
	ExpectInvalidOwner    = "invalid_owner_id"
	ExpectUnrecognisedKey = "unrecognised_legacy_key"
)

// Populate seeds the legacy bucket and photos table, reads every legacy
// object back to learn its bytes, builds the model, and adds the broken rows.
func (s *Sim) Populate(ctx context.Context, o PopulateOptions) error {
	so := seed.Options{Photos: o.Photos, Seed: s.cfg.Seed, OrphanRate: 0.05}
	if _, err := seed.Run(ctx, s.deps.Pool, s.deps.Objects, so); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := s.learnLegacy(ctx); err != nil {
		return err
	}
	owners := map[string]bool{}
	for _, sp := range seed.Generate(so) {
		p := &Photo{ID: sp.ID, Owner: sp.OwnerID, Origin: OriginSeeded, JobID: sp.JobID,
			Legacy: LegacyRow{Original: sp.Original, Processed: sp.Processed, Thumbnail: sp.Thumbnail}}
		objs, err := s.legacyObjects(p.Legacy)
		if err != nil {
			return err
		}
		p.Objects = map[ObjKey]*Object{}
		now := time.Now()
		for k, key := range objs {
			h, _ := s.model.LegacyHash(key)
			p.Objects[k] = &Object{Legacy: key, Versions: []Version{{Hash: h, Start: now, End: now}}}
		}
		s.model.addPhoto(p)
		if sp.OwnerID != nil && !owners[*sp.OwnerID] {
			owners[*sp.OwnerID] = true
			s.model.addUsers(*sp.OwnerID)
		}
	}
	r := s.rng(3)
	for range s.cfg.Users {
		s.model.addUsers(newID(r))
	}
	for range o.Problems {
		if err := s.addProblems(ctx); err != nil {
			return err
		}
	}
	// After the problems, from a stream of their own, so that every draw of
	// earlier seeds stays as it was.
	for i := range o.Shaped {
		if err := s.addShaped(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// learnLegacy reads every legacy object and records its bytes' hash.
func (s *Sim) learnLegacy(ctx context.Context) error {
	var keys []string
	for _, prefix := range verify.LegacyPrefixes {
		if err := s.deps.Objects.ListEach(ctx, prefix, func(k string, _ int64, _ string) error {
			keys = append(keys, k)
			return nil
		}); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, k := range keys {
		g.Go(func() error {
			b, err := s.deps.Objects.Get(gctx, k)
			if err != nil {
				return err
			}
			info, err := s.deps.Objects.Head(gctx, k)
			if err != nil {
				return err
			}
			tags, err := s.deps.Objects.Tags(gctx, k)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			s.model.addLegacy(k, hashOf(b))
			s.model.addHeaders(k, HeadersOf(info, tags))
			return nil
		})
	}
	return g.Wait()
}

// HeadersOf takes the headers a copy must keep from a HEAD and the object's
// tags. Only full-object checksums are taken: a composite one (of a
// multipart upload) depends on the part sizes, not only on the bytes.
func HeadersOf(i objstore.Info, tags map[string]string) Headers {
	h := Headers{ContentType: i.ContentType, CacheControl: i.CacheControl, ContentDisposition: i.ContentDisposition,
		ContentLanguage: i.ContentLanguage, ContentEncoding: i.ContentEncoding, Expires: i.Expires, Metadata: i.Metadata}
	if len(tags) > 0 {
		h.Tags = tags
	}
	if i.ChecksumType != types.ChecksumTypeComposite && !i.Multipart() {
		for alg, v := range i.Checksums {
			if h.Checksums == nil {
				h.Checksums = map[string]string{}
			}
			h.Checksums[string(alg)] = v
		}
	}
	return h
}

// Shaped objects are LargeMin to LargeMax bytes.
const (
	LargeMin = 6 << 20
	LargeMax = 12 << 20
)

// largeBody returns n bytes of the stream r, between LargeMin and LargeMax.
func largeBody(r *rand.Rand) []byte {
	b := make([]byte, LargeMin+r.IntN(LargeMax-LargeMin+1))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// shapedExpires is the Expires header of shaped objects (an HTTP date, as
// a client sends it).
var shapedExpires = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)

// putShaped writes a legacy object with the headers of a real one, reads its
// HEAD back (what the server kept is what a copy must carry), and records
// its hash and headers in the model. i varies the shape: a CRC32C or a
// SHA256 checksum, Content-Encoding on every other object.
func (s *Sim) putShaped(ctx context.Context, key string, k ObjKey, body []byte, i int) (string, error) {
	in := objstore.PutInput{Key: key, Body: body, ContentType: contentType(k),
		Metadata:     map[string]string{"camera": "x100v", "shape": "real"},
		CacheControl: "public, max-age=604800", Expires: &shapedExpires,
		Tagging: "source=legacy&shape=" + string(k.Kind), Checksum: types.ChecksumAlgorithmCrc32c}
	if i%2 == 1 {
		in.Checksum = types.ChecksumAlgorithmSha256
	}
	if i%2 == 0 || k.Kind == keylayout.KindMetadata {
		in.ContentEncoding = "br"
	}
	if err := s.deps.Objects.Put(ctx, in); err != nil {
		return "", fmt.Errorf("seed shaped legacy object %s: %w", key, err)
	}
	info, err := s.deps.Objects.Head(ctx, key)
	if err != nil {
		return "", fmt.Errorf("read back shaped legacy object %s: %w", key, err)
	}
	tags, err := s.deps.Objects.Tags(ctx, key)
	if err != nil {
		return "", fmt.Errorf("read back the tags of shaped legacy object %s: %w", key, err)
	}
	h := hashOf(body)
	s.model.addLegacy(key, h)
	s.model.addHeaders(key, HeadersOf(info, tags))
	return h, nil
}

// addShaped inserts legacy photo number i with real object shapes: an even i
// has a large original, an odd i a small original and a large animation;
// each has a thumbnail and a metadata file too.
func (s *Sim) addShaped(ctx context.Context, i int) error {
	r := s.rng(0x5a9ed000 + uint64(i))
	users := s.model.Users()
	owner := users[r.IntN(len(users))]
	job := newID(r)
	thumb := "thumbnails/" + job + ".jpg"
	p := &Photo{ID: newID(r), Owner: &owner, Origin: OriginSeeded, JobID: job,
		Legacy: LegacyRow{Original: "uploaded/" + job + ".jpg", Thumbnail: &thumb}, Objects: map[ObjKey]*Object{}}
	objs := []struct {
		key  string
		body []byte
	}{{p.Legacy.Original, nil}, {thumb, randomBytes(r, keylayout.KindThumbnail)}, {keylayout.LegacyMetadataKey(job), randomBytes(r, keylayout.KindMetadata)}}
	if i%2 == 0 {
		objs[0].body = largeBody(r)
	} else {
		objs[0].body = randomBytes(r, keylayout.KindOriginal)
		objs = append(objs, struct {
			key  string
			body []byte
		}{keylayout.LegacyAnimationKey(job, newID(r), "hd"), largeBody(r)})
	}
	now := time.Now()
	for j, o := range objs {
		l, err := keylayout.ParseLegacy(o.key)
		if err != nil {
			return err
		}
		k := ObjKeyOfLegacy(l)
		h, err := s.putShaped(ctx, o.key, k, o.body, i+j)
		if err != nil {
			return err
		}
		p.Objects[k] = &Object{Legacy: o.key, Versions: []Version{{Hash: h, Start: now, End: now}}}
	}
	if _, err := s.deps.Pool.Exec(ctx, `INSERT INTO photos (id, owner_id, original_key, processed_key, thumbnail_key) VALUES ($1, $2, $3, $4, $5)`,
		p.ID, p.Owner, p.Legacy.Original, p.Legacy.Processed, p.Legacy.Thumbnail); err != nil {
		return fmt.Errorf("insert shaped legacy row: %w", err)
	}
	s.model.addPhoto(p)
	return nil
}

// addProblems inserts one row of each deliberately broken kind.
func (s *Sim) addProblems(ctx context.Context) error {
	r := s.rng(4 + s.opSeq.Add(1)*7919)
	put := func(key string, k ObjKey) (string, error) {
		body := randomBytes(r, k.Kind)
		if err := s.deps.Objects.Put(ctx, objstore.PutInput{Key: key, Body: body, ContentType: contentType(k)}); err != nil {
			return "", err
		}
		s.model.addLegacy(key, hashOf(body))
		return hashOf(body), nil
	}
	insert := func(p *Photo) error {
		_, err := s.deps.Pool.Exec(ctx, `INSERT INTO photos (id, owner_id, original_key, processed_key, thumbnail_key) VALUES ($1, $2, $3, $4, $5)`,
			p.ID, p.Owner, p.Legacy.Original, p.Legacy.Processed, p.Legacy.Thumbnail)
		if err == nil {
			s.model.addPhoto(p)
		}
		return err
	}
	now := time.Now()
	users := s.model.Users()

	// A legacy original that was never uploaded: source_missing.
	job := newID(r)
	owner := users[r.IntN(len(users))] // each photo gets its own variable: the model keeps the pointer
	thumb := "thumbnails/" + job + ".jpg"
	p := &Photo{ID: newID(r), Owner: &owner, Origin: OriginProblem, JobID: job, Expect: ExpectSourceMissing,
		Legacy: LegacyRow{Original: "uploaded/" + job + ".jpg", Thumbnail: &thumb}, Objects: map[ObjKey]*Object{}}
	h, err := put(thumb, ObjKey{Kind: keylayout.KindThumbnail})
	if err != nil {
		return err
	}
	p.Objects[ObjKey{Kind: keylayout.KindThumbnail}] = &Object{Legacy: thumb, Versions: []Version{{Hash: h, Start: now, End: now}}}
	p.Objects[ObjKey{Kind: keylayout.KindOriginal, Ext: "jpg"}] = &Object{Legacy: p.Legacy.Original, Versions: []Version{{Hash: "", Start: now, End: now}}}
	if err := insert(p); err != nil {
		return err
	}

	// An owner id that is not an id: invalid_owner_id.
	job = newID(r)
	bad := "not-a-user/../" + fmt.Sprint(r.IntN(1000))
	p = &Photo{ID: newID(r), Owner: &bad, Origin: OriginProblem, JobID: job, Expect: ExpectInvalidOwner,
		Legacy: LegacyRow{Original: "uploaded/" + job + ".png"}, Objects: map[ObjKey]*Object{}}
	if h, err = put(p.Legacy.Original, ObjKey{Kind: keylayout.KindOriginal, Ext: "png"}); err != nil {
		return err
	}
	p.Objects[ObjKey{Kind: keylayout.KindOriginal, Ext: "png"}] = &Object{Legacy: p.Legacy.Original, Versions: []Version{{Hash: h, Start: now, End: now}}}
	if err := insert(p); err != nil {
		return err
	}

	// A key the layout does not know (a dot in the job id): unrecognised_legacy_key.
	owner3 := users[r.IntN(len(users))]
	key := "uploaded/" + newID(r) + ".v2.jpg"
	p = &Photo{ID: newID(r), Owner: &owner3, Origin: OriginProblem, Expect: ExpectUnrecognisedKey,
		Legacy: LegacyRow{Original: key}, Objects: map[ObjKey]*Object{}}
	if _, err = put(key, ObjKey{Kind: keylayout.KindOriginal, Ext: "jpg"}); err != nil {
		return err
	}
	return insert(p)
}
