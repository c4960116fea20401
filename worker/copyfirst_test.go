package worker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/worker"
)

// A copy made first, before its source was read, cannot set what only a read
// of the source tells: its storage class (or KMS key). When the read of the
// source made after the copy finds one (here a thumbnail in STANDARD_IA, as a
// server that keeps storage classes reports it; versitygw does not, so the
// proxy adds it to the source's HEAD), the copy is not accepted: the photo
// is re-planned with every source read first, and the thumbnail copied again
// into its class, over keymigrate's own unproven copy and only while it holds
// the ETag that copy's write returned. Accepting the unproven copy would pass
// every comparison of bytes and headers and still change the object's class.
func TestACopyMadeFirstIsCopiedAgainWhenItCannotCarryTheSourcesClass(t *testing.T) {
	b := setup(t, testenv.Options{})
	b.skipUnlessCopyFirst(t) // MinIO also refuses the STANDARD_IA this test fakes: no such tier is configured
	f := b.legacyPhoto()
	newThumb := keylayout.ThumbnailKey(f.Owner, f.ID)

	upstream, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
	require.NoError(t, err)
	type copyReq struct{ class, ifMatch string }
	var (
		mu     sync.Mutex
		copies []copyReq
	)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method == http.MethodHead && strings.HasSuffix(r.Request.URL.Path, "/"+f.Thumbnail) && r.StatusCode == http.StatusOK {
			r.Header.Set("X-Amz-Storage-Class", "STANDARD_IA")
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" && strings.HasSuffix(r.URL.Path, "/"+newThumb) {
			mu.Lock()
			copies = append(copies, copyReq{class: r.Header.Get("X-Amz-Storage-Class"), ifMatch: r.Header.Get("If-Match")})
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	client := s3.NewFromConfig(b.env.AWS, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		o.UsePathStyle = true
	})
	objects := objstore.New(client, b.env.Objects.Bucket(), objstore.Options{})

	b.send(f.ID, "run-1")
	b.drain(worker.New(b.env.Store, objects, b.env.Queue, b.env.DLQ, b.log, cfg()))
	b.requireMigrated(f)
	require.True(t, objects.Capabilities().CopyKeepsHeaders, "the thumbnail was copied first")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, copies, 2, "copied first, then again into its class: %+v", copies)
	require.Empty(t, copies[0].class, "the copy made first asks for no class (S3 writes STANDARD)")
	require.Equal(t, "STANDARD_IA", copies[1].class, "the copy made after reading the source sets its class")
	require.NotEmpty(t, copies[1].ifMatch, "and replaces only keymigrate's own copy")
	rec, ok, err := b.env.Store.ObjectMoveGetCopy(t.Context(), newThumb)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, copies[1].ifMatch, rec.ETag, "the ledger knows the final copy by its write's ETag (same bytes, same MD5)")
}

// A copy made first keeps its source's checksum, as the careful path's copy
// does (it asks for the source's own algorithm) and as S3 itself does when a
// CopyObject names no algorithm. Found by the soak with copy-first workers
// (seed 424242, copy-first mixed: 239 copies_keep_headers violations): the
// copy made first asked for the default algorithm (CRC64NVME) and so replaced
// a source's CRC32 with it, and its proof, which compared ETags only,
// accepted that. A legacy object uploaded with CRC32 must keep its CRC32.
func TestACopyMadeFirstKeepsTheSourcesChecksum(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	b.skipUnlessCopyFirst(t)
	for _, alg := range []string{"CRC32", "CRC32C", "SHA256", "CRC64NVME"} {
		t.Run(alg, func(t *testing.T) {
			id, owner, job := uuid.NewString(), uuid.NewString(), uuid.NewString()
			key := "uploaded/" + job + ".jpg"
			require.NoError(t, b.env.Objects.Put(ctx, objstore.PutInput{
				Key: key, Body: []byte("the legacy original, uploaded with " + alg), ContentType: "image/jpeg",
				Checksum: checksumAlg(alg),
			}))
			src, err := b.env.Objects.Head(ctx, key)
			require.NoError(t, err)
			want, ok := src.Checksums[checksumAlg(alg)]
			require.True(t, ok, "the source carries its %s (%v)", alg, src.Checksums)
			b.env.InsertPhoto(t, id, &owner, key, nil, nil)
			b.send(id, "run-"+alg)
			b.drain(b.worker(cfg()))

			newKey := keylayout.OriginalKey(owner, id, "jpg")
			require.Equal(t, newKey, b.env.Photo(t, id).Original)
			dst, err := b.env.Objects.Head(ctx, newKey)
			require.NoError(t, err)
			require.Equal(t, want, dst.Checksums[checksumAlg(alg)], "the copy carries the source's %s (it carries %v)", alg, dst.Checksums)
		})
	}
}

// skipUnlessCopyFirst skips a test of copies made first on a server where the
// worker never makes one: MinIO keeps ACLs, and a copy made first cannot
// carry them.
func (b *testBundle) skipUnlessCopyFirst(t *testing.T) {
	t.Helper()
	caps, err := b.env.Objects.Probe(context.Background())
	require.NoError(t, err)
	if caps.ACLs || !caps.CopyKeepsHeaders {
		t.Skipf("copy first is off on this server (capabilities %+v)", caps)
	}
}
