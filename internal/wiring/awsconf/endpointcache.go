package awsconf

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

// endpointCacheSize bounds the endpoints remembered per client. A worker talks
// to one bucket in one region, so it needs a handful (each operation's
// parameters are the same); a client used against many buckets stops caching
// past the bound and resolves every request as the SDK would.
const endpointCacheSize = 64

// cachedEndpoints remembers the S3 endpoint resolved for each set of the
// parameters the SDK's rules read. The SDK evaluates its endpoint rules twice
// per request (once to pick the auth scheme, once to route), and each
// evaluation allocates and grows the calling goroutine's stack through the
// rules engine's large frames: the workers' CPU profiles showed it at about
// 7% of their CPU, with a further share in stack copying. The rules are a pure
// function of the parameters, so the cached answer is the answer.
//
// Key, Prefix and CopySource are left out of the cache key on purpose: the
// rules of this SDK version never read them (TestEndpointCacheIgnoresObject
// checks that the endpoint does not change with them).
type cachedEndpoints struct {
	next s3.EndpointResolverV2
	mu   sync.RWMutex
	m    map[endpointKey]smithyendpoints.Endpoint
}

// endpointKey is every EndpointParameters field the rules read; a nil pointer
// and a set one differ (the rules treat an unset parameter apart from an empty
// one).
type endpointKey struct {
	bucket, region, endpoint                                        optString
	useFIPS, useDualStack, forcePathStyle, accelerate, useGlobal    optBool
	useObjectLambda, disableAccessPoints, disableMRAP, useArnRegion optBool
	useS3ExpressControlEndpoint, disableS3ExpressSessionAuth        optBool
}

type optString struct {
	set bool
	v   string
}

type optBool struct{ set, v bool }

func ostr(p *string) optString {
	if p == nil {
		return optString{}
	}
	return optString{true, *p}
}

func ob(p *bool) optBool {
	if p == nil {
		return optBool{}
	}
	return optBool{true, *p}
}

func keyOf(p s3.EndpointParameters) endpointKey {
	return endpointKey{
		bucket: ostr(p.Bucket), region: ostr(p.Region), endpoint: ostr(p.Endpoint),
		useFIPS: ob(p.UseFIPS), useDualStack: ob(p.UseDualStack), forcePathStyle: ob(p.ForcePathStyle),
		accelerate: ob(p.Accelerate), useGlobal: ob(p.UseGlobalEndpoint), useObjectLambda: ob(p.UseObjectLambdaEndpoint),
		disableAccessPoints: ob(p.DisableAccessPoints), disableMRAP: ob(p.DisableMultiRegionAccessPoints),
		useArnRegion: ob(p.UseArnRegion), useS3ExpressControlEndpoint: ob(p.UseS3ExpressControlEndpoint),
		disableS3ExpressSessionAuth: ob(p.DisableS3ExpressSessionAuth),
	}
}

// ResolveEndpoint implements s3.EndpointResolverV2. Errors are not cached.
func (c *cachedEndpoints) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	k := keyOf(p)
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return copyEndpoint(e), nil
	}
	e, err := c.next.ResolveEndpoint(ctx, p)
	if err != nil {
		return e, err
	}
	c.mu.Lock()
	if len(c.m) < endpointCacheSize {
		c.m[k] = e
	}
	c.mu.Unlock()
	return copyEndpoint(e), nil
}

// copyEndpoint gives each request an endpoint it may change: the SDK writes
// into what it is handed (auth scheme resolution rebases the endpoint's auth
// options onto the modelled ones, replacing their property maps), so the
// headers, the properties and each auth option with its property maps are
// copied. The URL is a value. TestEndpointCacheConcurrentRequests crashes
// with "concurrent map iteration and map write" without the auth option
// copies.
func copyEndpoint(e smithyendpoints.Endpoint) smithyendpoints.Endpoint {
	if e.Headers != nil {
		e.Headers = e.Headers.Clone()
	}
	var props smithy.Properties
	props.SetAll(&e.Properties)
	if opts, ok := smithyauth.GetAuthOptions(&e.Properties); ok {
		cp := make([]*smithyauth.Option, len(opts))
		for i, o := range opts {
			c := *o
			c.IdentityProperties, c.SignerProperties = smithy.Properties{}, smithy.Properties{}
			c.IdentityProperties.SetAll(&o.IdentityProperties)
			c.SignerProperties.SetAll(&o.SignerProperties)
			cp[i] = &c
		}
		smithyauth.SetAuthOptions(&props, cp)
	}
	e.Properties = props
	return e
}

// cacheEndpoints wraps the client's endpoint resolver (the SDK's default when
// none was given); it must run after every other option function.
func cacheEndpoints(o *s3.Options) {
	next := o.EndpointResolverV2
	if next == nil {
		next = s3.NewDefaultEndpointResolverV2()
	}
	if _, already := next.(*cachedEndpoints); already {
		return
	}
	o.EndpointResolverV2 = &cachedEndpoints{next: next, m: map[endpointKey]smithyendpoints.Endpoint{}}
}
