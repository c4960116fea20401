package synths3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// endpoint is one test's synthetic endpoint and an SDK client on it.
type endpoint struct {
	ks     *Keyspace
	srv    *Server
	url    string
	client *s3.Client
	bucket string
}

func startEndpoint(t testing.TB, cfg Config, o Options) *endpoint {
	t.Helper()
	ks, err := New(cfg)
	require.NoError(t, err)
	srv := NewServer(ks, o)
	url, err := srv.Start("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return &endpoint{ks: ks, srv: srv, url: url, client: sdkClient(url), bucket: srv.Bucket()}
}

// sdkClient is aws-sdk-go-v2's S3 client on the endpoint, path-style, with
// made-up credentials (the endpoint checks none).
func sdkClient(url string) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("synthetic", "synthetic", ""),
		BaseEndpoint: aws.String(url),
		UsePathStyle: true,
		HTTPClient: awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 64
		}),
		DisableLogOutputChecksumValidationSkipped: true,
	})
}

func (e *endpoint) objects() *objstore.Store {
	st := objstore.New(e.client, e.bucket, objstore.Options{})
	st.SetCapabilities(Capabilities())
	return st
}

// legacyKeys are the keyspace's legacy keys under prefix, sorted.
func legacyKeys(ks *Keyspace, prefix string) []string {
	var keys []string
	for i := range ks.Photos() {
		for _, o := range ks.Photo(i).Objects {
			if strings.HasPrefix(o.LegacyKey, prefix) {
				keys = append(keys, o.LegacyKey)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// listAll lists prefix with the SDK's paginator, pageSize keys a page.
func (e *endpoint) listAll(t testing.TB, in s3.ListObjectsV2Input, pageSize int32) (keys, prefixes []string, pages int) {
	t.Helper()
	in.Bucket = &e.bucket
	in.MaxKeys = &pageSize
	p := s3.NewListObjectsV2Paginator(e.client, &in)
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(t, err)
		pages++
		require.LessOrEqual(t, len(page.Contents)+len(page.CommonPrefixes), int(pageSize))
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		for _, c := range page.CommonPrefixes {
			prefixes = append(prefixes, aws.ToString(c.Prefix))
		}
	}
	return keys, prefixes, pages
}

func TestListingGivesEveryLegacyKeyInOrderAcrossPages(t *testing.T) {
	t.Parallel()
	for _, idType := range []IDType{IDBigint, IDUUID} {
		t.Run(string(idType), func(t *testing.T) {
			t.Parallel()
			e := startEndpoint(t, Config{Photos: 2000, IDType: idType}, Options{})
			total := 0
			for _, prefix := range keylayout.LegacyPrefixes {
				want := legacyKeys(e.ks, prefix)
				require.NotEmpty(t, want)
				got, _, pages := e.listAll(t, s3.ListObjectsV2Input{Prefix: aws.String(prefix)}, 137)
				require.Equal(t, want, got, "listing %s", prefix)
				require.Equal(t, (len(want)+136)/137, pages, "pages of %s", prefix)
				for _, k := range got {
					_, err := keylayout.ParseLegacy(k)
					require.NoError(t, err, "every key is of the legacy layout")
				}
				total += len(got)
			}
			require.EqualValues(t, e.ks.Totals().Objects, total)
			ratio := float64(total) / 2000
			require.InDelta(t, 3.38, ratio, 0.15, "objects per photo")

			// A narrower prefix and a start-after.
			all := legacyKeys(e.ks, "uploaded/")
			mid := all[len(all)/2]
			got, _, _ := e.listAll(t, s3.ListObjectsV2Input{Prefix: aws.String("uploaded/"), StartAfter: aws.String(mid)}, 1000)
			require.Equal(t, all[len(all)/2+1:], got)
			narrow := mid[:len("uploaded/")+3]
			got, _, _ = e.listAll(t, s3.ListObjectsV2Input{Prefix: aws.String(narrow)}, 1000)
			require.Equal(t, legacyKeys(e.ks, narrow), got)
		})
	}
}

func TestListingWithADelimiterGivesOneCommonPrefixPerJob(t *testing.T) {
	t.Parallel()
	e := startEndpoint(t, Config{Photos: 2000}, Options{})
	for _, prefix := range []string{"restored/", "animated/"} {
		seen := map[string]bool{}
		var want []string
		for _, k := range legacyKeys(e.ks, prefix) {
			dir := k[:strings.LastIndex(k, "/")+1]
			if !seen[dir] {
				seen[dir] = true
				want = append(want, dir)
			}
		}
		keys, prefixes, _ := e.listAll(t, s3.ListObjectsV2Input{Prefix: aws.String(prefix), Delimiter: aws.String("/")}, 100)
		require.Empty(t, keys)
		require.Equal(t, want, prefixes)
	}
}

func TestListingThatExhaustsItsScanBudgetStillListsEverything(t *testing.T) {
	t.Parallel()
	e := startEndpoint(t, Config{Photos: 2000}, Options{})
	e.srv.scanBudget = 25 // a few jobs a request: most pages come back short
	want := legacyKeys(e.ks, "meta/")
	got, _, pages := e.listAll(t, s3.ListObjectsV2Input{Prefix: aws.String("meta/")}, 1000)
	require.Equal(t, want, got)
	require.Greater(t, pages, 2000/25-1, "every page stopped at the budget")
}

func TestListingIsURLEncodedWhenAsked(t *testing.T) {
	t.Parallel()
	e := startEndpoint(t, Config{Photos: 50}, Options{})
	ctx := context.Background()
	_, err := e.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.bucket, Key: aws.String("scratch/a b+c.txt"), Body: strings.NewReader("x")})
	require.NoError(t, err)
	out, err := e.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &e.bucket, Prefix: aws.String("scratch/"), EncodingType: types.EncodingTypeUrl})
	require.NoError(t, err)
	require.Len(t, out.Contents, 1)
	require.Equal(t, "scratch/a%20b+c.txt", aws.ToString(out.Contents[0].Key))
}

func TestListingUsersWiderThanAPhotoIsRefusedLoudly(t *testing.T) {
	t.Parallel()
	e := startEndpoint(t, Config{Photos: 50}, Options{Mode: Migrated})
	ctx := context.Background()
	_, err := e.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &e.bucket, Prefix: aws.String("users/")})
	requireCode(t, err, "NotImplemented")
	require.Contains(t, e.srv.Stats().NotImplemented, "ListObjectsV2")

	p := firstOwned(e.ks)
	prefixes, _ := keylayout.PhotoObjects(p.OwnerID, p.ID)
	var want []string
	for _, o := range p.Objects {
		if o.UserKey != "" && (strings.HasPrefix(o.UserKey, prefixes[0]) || strings.HasPrefix(o.UserKey, prefixes[1]) || strings.HasPrefix(o.UserKey, prefixes[2])) {
			want = append(want, o.UserKey)
		}
	}
	var got []string
	for _, prefix := range prefixes {
		keys, _, _ := e.listAll(t, s3.ListObjectsV2Input{Prefix: aws.String(prefix)}, 1000)
		got = append(got, keys...)
	}
	sort.Strings(want)
	sort.Strings(got)
	require.Equal(t, want, got)
}

func firstOwned(ks *Keyspace) Photo {
	for i := range ks.Photos() {
		if p := ks.Photo(i); p.OwnerID != "" && len(p.Objects) >= 4 {
			return p
		}
	}
	panic("no photo with an owner and four objects")
}

func requireCode(t testing.TB, err error, code string) {
	t.Helper()
	require.Error(t, err)
	var ae interface{ ErrorCode() string }
	require.True(t, errors.As(err, &ae), "not an API error: %v", err)
	require.Equal(t, code, ae.ErrorCode(), "%v", err)
}

func TestHeadCopyDeleteBehaveAsS3Does(t *testing.T) {
	t.Parallel()
	e := startEndpoint(t, Config{Photos: 200}, Options{})
	ctx := context.Background()
	st := e.objects()
	p := firstOwned(e.ks)
	o := p.Objects[0]

	// HEAD of a legacy object: its size, ETag, class, type; no checksum.
	src, err := st.Head(ctx, o.LegacyKey)
	require.NoError(t, err)
	require.Equal(t, o.Size, src.Size)
	require.Equal(t, o.ETag, src.ETag)
	require.Equal(t, o.ContentType, src.ContentType)
	require.Empty(t, src.Checksums)
	// The user-scoped key does not exist before the migration.
	_, err = st.Head(ctx, o.UserKey)
	require.ErrorIs(t, err, objstore.ErrNotFound)

	// A copy pinned to a wrong source ETag is refused with 412.
	_, err = e.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &e.bucket, Key: aws.String(o.UserKey),
		CopySource: aws.String(e.bucket + "/" + o.LegacyKey), CopySourceIfMatch: aws.String(`"0123456789abcdef0123456789abcdef"`)})
	requireCode(t, err, "PreconditionFailed")
	_, err = st.Head(ctx, o.UserKey)
	require.ErrorIs(t, err, objstore.ErrNotFound, "a refused copy wrote nothing")

	// The migration's copy: the source's ETag, a CRC64NVME.
	res, err := st.Copy(ctx, src, o.UserKey, "")
	require.NoError(t, err)
	require.Equal(t, o.ETag, res.ETag)
	require.Equal(t, o.Checksum, res.Checksums[types.ChecksumAlgorithmCrc64nvme])
	dst, err := st.HeadIfMatch(ctx, o.UserKey, res.ETag)
	require.NoError(t, err)
	require.True(t, objstore.Compare(src, dst).Equal, "the copy is its source's")
	require.Equal(t, o.Checksum, dst.Checksums[types.ChecksumAlgorithmCrc64nvme])
	// If-None-Match: * refuses a second copy onto it.
	_, err = st.Copy(ctx, src, o.UserKey, "")
	require.ErrorIs(t, err, objstore.ErrPrecondition)

	// Deletes: conditional on a wrong ETag refused, then HEAD after DELETE 404.
	require.ErrorIs(t, st.DeleteIf(ctx, o.LegacyKey, `"00000000000000000000000000000000"`), objstore.ErrPrecondition)
	require.NoError(t, st.DeleteIf(ctx, o.LegacyKey, o.ETag))
	_, err = st.Head(ctx, o.LegacyKey)
	require.ErrorIs(t, err, objstore.ErrNotFound)
	require.ErrorIs(t, st.DeleteIf(ctx, o.LegacyKey, o.ETag), objstore.ErrNotFound)
	keys, _, _ := e.listAll(t, s3.ListObjectsV2Input{Prefix: aws.String("uploaded/")}, 1000)
	require.NotContains(t, keys, o.LegacyKey, "a deleted object is not listed")
	require.Len(t, keys, int(e.ks.Photos())-1)

	// A batch delete honours each object's ETag.
	other := p.Objects[1].LegacyKey
	failed, err := st.DeleteBatchIf(ctx, map[string]string{other: `"00000000000000000000000000000000"`, p.Objects[2].LegacyKey: p.Objects[2].ETag}, 4)
	require.NoError(t, err)
	require.Len(t, failed, 1)
	require.Equal(t, "PreconditionFailed", failed[other].Code)
	ok, err := st.Exists(ctx, p.Objects[2].LegacyKey)
	require.NoError(t, err)
	require.False(t, ok)

	// GET streams the right number of deterministic bytes, ranges too.
	body, err := st.Get(ctx, other)
	require.NoError(t, err)
	require.Len(t, body, int(p.Objects[1].Size))
	out, err := e.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &e.bucket, Key: aws.String(other), Range: aws.String("bytes=10-19")})
	require.NoError(t, err)
	part, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	require.Equal(t, body[10:20], part)

	// Writing other bytes onto a keyspace key is not something it can do.
	_, err = e.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.bucket, Key: aws.String(other), Body: strings.NewReader("x")})
	requireCode(t, err, "NotImplemented")
	stats := e.srv.Stats()
	// The same counts as JSON, for a bench in another process.
	resp, err := http.Get(e.url + "/__stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var served Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&served))
	require.Equal(t, stats, served)
	require.Positive(t, stats.Requests["HeadObject"])
	require.Positive(t, stats.Requests["CopyObject"])
	require.EqualValues(t, 3, stats.Requests["DeleteObject"])
	require.EqualValues(t, 1, stats.Requests["DeleteObjects"])
}

func TestTheProbeFindsWhatAWSEnforces(t *testing.T) {
	t.Parallel()
	e := startEndpoint(t, Config{Photos: 10}, Options{})
	st := objstore.New(e.client, e.bucket, objstore.Options{})
	c, err := st.Probe(context.Background())
	require.NoError(t, err)
	require.Equal(t, Capabilities(), c)
	keys, _, _ := e.listAll(t, s3.ListObjectsV2Input{Prefix: aws.String(objstore.ProbePrefix)}, 1000)
	require.Empty(t, keys, "the probe removed what it wrote")
	require.Empty(t, e.srv.Stats().NotImplemented)
}

func TestUnknownOperationsAnswerNotImplemented(t *testing.T) {
	t.Parallel()
	e := startEndpoint(t, Config{Photos: 10}, Options{})
	_, err := e.client.GetBucketVersioning(context.Background(), &s3.GetBucketVersioningInput{Bucket: &e.bucket})
	requireCode(t, err, "NotImplemented")
	require.Contains(t, fmt.Sprint(e.srv.Stats().NotImplemented), "versioning")
}

func TestALatencyIsAddedToEveryRequest(t *testing.T) {
	t.Parallel()
	e := startEndpoint(t, Config{Photos: 10}, Options{Latency: 60 * time.Millisecond})
	start := time.Now()
	_, err := e.objects().Head(context.Background(), e.ks.Photo(0).OriginalKey)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 60*time.Millisecond)
}

func TestItListensOnLoopbackPortsBelow32768Only(t *testing.T) {
	t.Parallel()
	ks, err := New(Config{Photos: 1})
	require.NoError(t, err)
	for _, addr := range []string{"0.0.0.0:0", "127.0.0.1:40000", ":0"} {
		_, err := NewServer(ks, Options{}).Start(addr)
		require.Error(t, err, addr)
	}
}
