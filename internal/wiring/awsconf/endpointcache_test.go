package awsconf

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingResolver counts the resolutions that reach the SDK's resolver.
type countingResolver struct {
	n    atomic.Int32
	next s3.EndpointResolverV2
	fail bool
}

func (c *countingResolver) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	c.n.Add(1)
	if c.fail {
		return smithyendpoints.Endpoint{}, errors.New("no endpoint")
	}
	return c.next.ResolveEndpoint(ctx, p)
}

// The cache key leaves out Key, Prefix and CopySource because the SDK's rules
// never read them: if a later SDK starts routing on them, this fails and the
// key must grow.
func TestEndpointCacheIgnoresObject(t *testing.T) {
	ctx := context.Background()
	sdk := s3.NewDefaultEndpointResolverV2()
	for _, base := range []s3.EndpointParameters{
		{Bucket: aws.String("photos"), Region: aws.String("us-east-1")},
		{Bucket: aws.String("photos"), Region: aws.String("eu-west-1"), ForcePathStyle: aws.Bool(true)},
		{Bucket: aws.String("photos"), Region: aws.String("us-east-1"), Endpoint: aws.String("http://127.0.0.1:7070"), ForcePathStyle: aws.Bool(true)},
		{Bucket: aws.String("photos--use1-az4--x-s3"), Region: aws.String("us-east-1")},
	} {
		want, err := sdk.ResolveEndpoint(ctx, base)
		require.NoError(t, err)
		with := base
		with.Key, with.Prefix, with.CopySource = aws.String("u/1/p/a.jpg"), aws.String("u/1/"), aws.String("photos/legacy/a.jpg")
		got, err := sdk.ResolveEndpoint(ctx, with)
		require.NoError(t, err)
		require.Equal(t, want.URI.String(), got.URI.String())
		require.Equal(t, want.Headers, got.Headers)
		require.Equal(t, want.Properties, got.Properties)
	}
}

// One resolution per distinct set of parameters; a different bucket, region
// or endpoint is resolved afresh and answered with its own endpoint; errors
// are not remembered; past the bound nothing more is cached.
func TestEndpointCache(t *testing.T) {
	ctx := context.Background()
	inner := &countingResolver{next: s3.NewDefaultEndpointResolverV2()}
	o := s3.Options{EndpointResolverV2: inner}
	cacheEndpoints(&o)
	cacheEndpoints(&o) // idempotent: one layer
	c := o.EndpointResolverV2.(*cachedEndpoints)
	require.Same(t, inner, c.next)

	p := s3.EndpointParameters{Bucket: aws.String("photos"), Region: aws.String("us-east-1")}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			q := p
			q.Key = aws.String(strings.Repeat("k", i+1))
			e, err := c.ResolveEndpoint(ctx, q)
			assert.NoError(t, err)
			assert.Equal(t, "https://photos.s3.us-east-1.amazonaws.com", e.URI.String())
		})
	}
	wg.Wait()
	require.LessOrEqual(t, inner.n.Load(), int32(50))
	before := inner.n.Load()
	_, err := c.ResolveEndpoint(ctx, p)
	require.NoError(t, err)
	require.Equal(t, before, inner.n.Load(), "a repeated request is answered from the cache")

	other := p
	other.Bucket = aws.String("archive")
	e, err := c.ResolveEndpoint(ctx, other)
	require.NoError(t, err)
	require.Equal(t, "https://archive.s3.us-east-1.amazonaws.com", e.URI.String())
	region := p
	region.Region = aws.String("eu-west-1")
	e, err = c.ResolveEndpoint(ctx, region)
	require.NoError(t, err)
	require.Equal(t, "https://photos.s3.eu-west-1.amazonaws.com", e.URI.String())
	local := p
	local.Endpoint, local.ForcePathStyle = aws.String("http://127.0.0.1:7070"), aws.Bool(true)
	e, err = c.ResolveEndpoint(ctx, local)
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:7070/photos", e.URI.String())
	unset := p
	unset.ForcePathStyle = aws.Bool(false) // set to false is a different key from unset
	_, err = c.ResolveEndpoint(ctx, unset)
	require.NoError(t, err)
	require.Equal(t, before+4, inner.n.Load())

	for i := range endpointCacheSize + 10 {
		q := p
		q.Bucket = aws.String(strings.Repeat("b", 3+i%60) + string(rune('a'+i/60)))
		_, err := c.ResolveEndpoint(ctx, q)
		require.NoError(t, err)
	}
	require.Len(t, c.m, endpointCacheSize)

	failing := &countingResolver{fail: true}
	fo := s3.Options{EndpointResolverV2: failing}
	cacheEndpoints(&fo)
	for range 2 {
		_, err := fo.EndpointResolverV2.ResolveEndpoint(ctx, p)
		require.Error(t, err)
	}
	require.Equal(t, int32(2), failing.n.Load(), "errors are resolved again")
}

// A client built by S3 sends its requests to the resolved endpoint through
// the cache, and a per-call resolver still wins for that call.
func TestS3ClientUsesEndpointCache(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("ETag", `"e"`)
		w.Header().Set("Content-Length", "0")
	}))
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	cfg, err := Load(context.Background(), Options{Region: "us-east-1"})
	require.NoError(t, err)
	client := S3(cfg, Options{})
	_, isCached := client.Options().EndpointResolverV2.(*cachedEndpoints)
	require.True(t, isCached)
	for _, key := range []string{"a.jpg", "u/1/b.jpg"} {
		_, err := client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("photos"), Key: aws.String(key)})
		require.NoError(t, err)
	}
	_, err = client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("other"), Key: aws.String("c.jpg")})
	require.NoError(t, err)
	require.Equal(t, []string{"/photos/a.jpg", "/photos/u/1/b.jpg", "/other/c.jpg"}, paths)
}

// Requests at once share the cached endpoint; the SDK writes into the auth
// options it is handed, so each must get its own copy (run with -race; the
// shared copy crashed the worker with "concurrent map iteration and map
// write").
func TestEndpointCacheConcurrentRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"e"`)
		w.Header().Set("Content-Length", "0")
	}))
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	cfg, err := Load(context.Background(), Options{Region: "us-east-1", MaxConns: 32})
	require.NoError(t, err)
	client := S3(cfg, Options{})
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for j := range 50 {
				_, err := client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("photos"), Key: aws.String(strings.Repeat("k", 1+(i+j)%7))})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
}

// Every parameter the SDK passes to its endpoint rules is in the cache key,
// but for the three the rules are shown above not to read: a later SDK that
// adds a parameter fails this until the key takes it in (or it is shown
// unread), instead of serving one parameter's endpoint for another's.
func TestEndpointCacheKeyCoversEveryParameter(t *testing.T) {
	unread := map[string]bool{"Key": true, "Prefix": true, "CopySource": true}
	typ := reflect.TypeOf(s3.EndpointParameters{})
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if !f.IsExported() || unread[f.Name] {
			continue
		}
		var p s3.EndpointParameters
		v := reflect.ValueOf(&p).Elem().Field(i)
		switch f.Type {
		case reflect.TypeOf((*string)(nil)):
			v.Set(reflect.ValueOf(aws.String("x")))
		case reflect.TypeOf((*bool)(nil)):
			v.Set(reflect.ValueOf(aws.Bool(false)))
		default:
			t.Fatalf("EndpointParameters.%s has type %s, which the cache key does not know: add it to endpointKey", f.Name, f.Type)
		}
		require.NotEqual(t, keyOf(s3.EndpointParameters{}), keyOf(p),
			"EndpointParameters.%s is not in the endpoint cache's key: add it to endpointKey (or, if the SDK's rules never read it, to this test's unread list with a check like TestEndpointCacheIgnoresObject)", f.Name)
	}
}
