package objstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"
)

// DestinationCheck says how a copy avoids replacing an object it did not write.
type DestinationCheck string

// The destination checks.
const (
	// DestinationAuto follows what the server was found to enforce (Probe).
	DestinationAuto DestinationCheck = "auto"
	// DestinationConditional relies on If-None-Match / If-Match on CopyObject,
	// which S3 enforces atomically: one request per copy.
	DestinationConditional DestinationCheck = "conditional"
	// DestinationHead reads the destination before every copy, for servers that
	// ignore those conditions (versitygw v1.8.0 does): one more request per
	// copy, and a window of milliseconds between the read and the copy.
	DestinationHead DestinationCheck = "head"
)

// ParseDestinationCheck validates a flag value.
func ParseDestinationCheck(s string) (DestinationCheck, error) {
	switch d := DestinationCheck(s); d {
	case DestinationAuto, DestinationConditional, DestinationHead:
		return d, nil
	}
	return "", fmt.Errorf("destination check %q: want auto, conditional or head", s)
}

// ProbePrefix is where the probe writes its tiny objects. It is under users/
// (the only prefix the worker may write) but can never collide with a photo,
// because ".keymigrate-probe" is not a valid user id.
const ProbePrefix = "users/.keymigrate-probe/"

// Capabilities are the conditions the S3 server enforces. The fleet learns
// them once (the control record keeps them), so that not every worker start
// writes probe objects.
type Capabilities struct {
	// ConditionalCopy: If-None-Match / If-Match on CopyObject (S3 yes,
	// versitygw v1.8.0 and MinIO no).
	ConditionalCopy bool
	// ConditionalDelete: If-Match on DeleteObject (S3 and versitygw yes).
	ConditionalDelete bool
	// ConditionalBatchDelete: the per-object ETag of DeleteObjects (S3 yes,
	// versitygw v1.8.0 ignores it and deletes anyway).
	ConditionalBatchDelete bool
	// CopyKeepsHeaders: a single-part CopyObject with MetadataDirective COPY
	// keeps the content type, user metadata and every content header (the
	// website redirect location aside, which the copy sets), and its response
	// carries the new ETag and the requested checksum. Then a copy is verified
	// from its own response, without reading it back (VerifyFromResponse).
	CopyKeepsHeaders bool
	// ACLs: the bucket keeps per-object ACLs (its object ownership is not
	// BucketOwnerEnforced, S3's default since 2023). Then every source's ACL
	// is read, and one that is not the owner's default is reported: a copy
	// gets the default ACL.
	ACLs bool
}

// caps is what the Store uses; guarded because workers set it after start.
type caps struct {
	mu  sync.RWMutex
	c   Capabilities
	set bool
}

// SetCapabilities tells the store what the server enforces. The
// DestinationCheck option overrides ConditionalCopy.
func (s *Store) SetCapabilities(c Capabilities) {
	switch s.opts.DestinationCheck {
	case DestinationConditional:
		c.ConditionalCopy = true
	case DestinationHead:
		c.ConditionalCopy = false
	}
	s.caps.mu.Lock()
	defer s.caps.mu.Unlock()
	s.caps.c, s.caps.set = c, true
}

// Capabilities returns what the store assumes the server enforces (all false,
// the safe answer, until SetCapabilities).
func (s *Store) Capabilities() Capabilities {
	s.caps.mu.RLock()
	defer s.caps.mu.RUnlock()
	return s.caps.c
}

// ConditionalCopy reports whether copies rely on the server's conditions.
func (s *Store) ConditionalCopy() bool { return s.Capabilities().ConditionalCopy }

// ResolveDestinationCheck probes the server (Probe), applies the answer, and
// returns the destination check in force.
func (s *Store) ResolveDestinationCheck(ctx context.Context) (DestinationCheck, error) {
	c, err := s.Probe(ctx)
	s.SetCapabilities(c)
	if s.ConditionalCopy() {
		return DestinationConditional, err
	}
	return DestinationHead, err
}

// probeStaleAfter is the age after which probe objects are someone's
// leftovers (a worker killed mid-probe) and are removed.
const probeStaleAfter = time.Hour

// Probe finds out which conditions the server enforces, with tiny objects
// under ProbePrefix: a copy onto an existing object with If-None-Match: *, a
// delete and a batch delete with a wrong ETag. It deletes its objects, and
// any probe objects older than an hour that a killed process left behind.
// Any doubt (an error, a condition ignored) answers false, the safe side.
func (s *Store) Probe(ctx context.Context) (Capabilities, error) {
	s.removeStaleProbes(ctx)
	var b [8]byte
	_, _ = rand.Read(b[:])
	dir := ProbePrefix + hex.EncodeToString(b[:]) + "/"
	a, z, d := dir+"a", dir+"b", dir+"d"
	defer func() {
		_, _ = s.DeleteBatch(context.WithoutCancel(ctx), []string{a, z, d})
	}()
	for _, k := range []string{a, z, d} {
		if err := s.Put(ctx, PutInput{Key: k, Body: []byte(k)}); err != nil {
			return Capabilities{}, fmt.Errorf("probe the S3 server: %w", err)
		}
	}
	var c Capabilities
	var errs []error
	_, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: &s.bucket, Key: aws.String(z), CopySource: aws.String(copySource(s.bucket, a)), IfNoneMatch: aws.String("*"),
	})
	switch {
	case err == nil:
	case errors.Is(classify(err), ErrPrecondition):
		c.ConditionalCopy = true
	default:
		errs = append(errs, fmt.Errorf("probe conditional copy: %w", err))
	}
	wrong := `"00000000000000000000000000000000"`
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(a), IfMatch: aws.String(wrong)})
	switch {
	case errors.Is(classify(err), ErrPrecondition):
		c.ConditionalDelete = s.still(ctx, a)
	case err != nil:
		errs = append(errs, fmt.Errorf("probe conditional delete: %w", err))
	}
	out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &s.bucket, Delete: &types.Delete{
		Objects: []types.ObjectIdentifier{{Key: aws.String(d), ETag: aws.String(wrong)}}, Quiet: aws.Bool(true),
	}})
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("probe conditional batch delete: %w", err))
	case len(out.Errors) == 1:
		c.ConditionalBatchDelete = s.still(ctx, d)
	}
	if c.CopyKeepsHeaders, err = s.probeCopyFidelity(ctx, dir); err != nil {
		errs = append(errs, err)
	}
	c.ACLs, err = s.aclsEnabled(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// probeCopyFidelity copies an object carrying every content header and user
// metadata, and reads the copy back: does the server keep them all, and does
// the copy's response prove the bytes (its checksum and ETag equal the
// source's)? It removes its objects.
func (s *Store) probeCopyFidelity(ctx context.Context, dir string) (bool, error) {
	// Two copies: an object with an Expires header is copied with REPLACE
	// (Copy explains why), one without it with the plain COPY.
	expires := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, exp := range []*time.Time{&expires, nil} {
		ok, err := s.probeOneCopy(ctx, fmt.Sprintf("%sh%d", dir, i), exp)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func (s *Store) probeOneCopy(ctx context.Context, src string, expires *time.Time) (bool, error) {
	dst := src + "c"
	defer func() { _, _ = s.DeleteBatch(context.WithoutCancel(ctx), []string{src, dst}) }()
	if err := s.Put(ctx, PutInput{Key: src, Body: []byte("keymigrate copy fidelity probe"), ContentType: "image/jpeg",
		Metadata: map[string]string{"probe": "1"}, CacheControl: "max-age=1", ContentDisposition: "inline",
		ContentEncoding: "identity", ContentLanguage: "en", Expires: expires, Checksum: s.opts.DefaultChecksum}); err != nil {
		return false, fmt.Errorf("probe copy fidelity: %w", err)
	}
	in, err := s.Head(ctx, src)
	if err != nil {
		return false, fmt.Errorf("probe copy fidelity: %w", err)
	}
	res, err := s.Copy(ctx, in, dst, "")
	if err != nil {
		return false, fmt.Errorf("probe copy fidelity: %w", err)
	}
	out, err := s.HeadIfMatch(ctx, dst, res.ETag)
	if err != nil {
		return false, fmt.Errorf("probe copy fidelity: %w", err)
	}
	if v := Compare(in, out); !v.Equal {
		return false, nil // the server drops something a COPY should keep
	}
	v := Compare(in, FromResponse(in, res))
	return v.Equal, nil
}

// aclsEnabled reports whether the bucket keeps per-object ACLs.
func (s *Store) aclsEnabled(ctx context.Context) (bool, error) {
	out, err := s.client.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: &s.bucket})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "OwnershipControlsNotFoundError" {
			return true, nil // a bucket from before ownership controls: ACLs apply
		}
		if errors.As(err, &ae) && ae.ErrorCode() == "NotImplemented" {
			// A server without ownership controls (MinIO): ACLs may apply,
			// and a copy's are reported per object.
			return true, nil
		}
		return true, fmt.Errorf("probe the bucket's object ownership: %w", err)
	}
	for _, r := range out.OwnershipControls.Rules {
		if r.ObjectOwnership == types.ObjectOwnershipBucketOwnerEnforced {
			return false, nil
		}
	}
	return true, nil
}

// ACLNotCarried describes key's ACL if it grants anything beyond its owner's
// full control ("" if not): a copy gets the bucket's default ACL, so such
// grants are not carried, and the ledger reports them.
func (s *Store) ACLNotCarried(ctx context.Context, key string) (string, error) {
	out, err := s.client.GetObjectAcl(ctx, &s3.GetObjectAclInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return "", fmt.Errorf("read the ACL of s3://%s/%s: %w", s.bucket, key, classify(err))
	}
	return describeGrants(out.Owner, out.Grants), nil
}

// describeGrants lists the grants other than the owner's FULL_CONTROL.
func describeGrants(owner *types.Owner, grants []types.Grant) string {
	var extra []string
	for _, g := range grants {
		if g.Grantee == nil {
			continue
		}
		who := aws.ToString(g.Grantee.ID)
		if uri := aws.ToString(g.Grantee.URI); uri != "" {
			who = uri
		} else if mail := aws.ToString(g.Grantee.EmailAddress); mail != "" {
			who = mail
		}
		if owner != nil && g.Grantee.Type == types.TypeCanonicalUser && aws.ToString(g.Grantee.ID) == aws.ToString(owner.ID) && g.Permission == types.PermissionFullControl {
			continue
		}
		extra = append(extra, string(g.Permission)+" to "+who)
	}
	if len(extra) == 0 {
		return ""
	}
	return "ACL grants " + strings.Join(extra, ", ")
}

// still reports whether key exists (false on any doubt).
func (s *Store) still(ctx context.Context, key string) bool {
	ok, err := s.Exists(ctx, key)
	return ok && err == nil
}

// removeStaleProbes deletes probe objects older than probeStaleAfter.
func (s *Store) removeStaleProbes(ctx context.Context) {
	var stale []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(ProbePrefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return
		}
		for _, o := range page.Contents {
			if time.Since(aws.ToTime(o.LastModified)) > probeStaleAfter {
				stale = append(stale, aws.ToString(o.Key))
			}
		}
	}
	for start := 0; start < len(stale); start += 1000 {
		_, _ = s.DeleteBatch(ctx, stale[start:min(start+1000, len(stale))])
	}
}

// DeleteIf deletes key only if it still has etag: bytes keymigrate did not
// write (or legacy bytes that changed since they were copied) are never
// deleted. Where the server enforces If-Match on DeleteObject the condition is
// atomic; elsewhere the object is read first and a window of milliseconds
// remains between the read and the delete (see the README). It returns
// ErrPrecondition when the object has another ETag, ErrNotFound when it is
// gone.
func (s *Store) DeleteIf(ctx context.Context, key, etag string) error {
	if etag == "" {
		return fmt.Errorf("delete s3://%s/%s: no ETag to make the delete conditional on", s.bucket, key)
	}
	if !s.Capabilities().ConditionalDelete {
		// The object is read before the delete, and again before any retry
		// (guardedWrite).
		err := s.guardedWrite(ctx, key, etag, true, func(optFns ...func(*s3.Options)) error {
			_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}, optFns...)
			return err
		})
		if err != nil {
			return fmt.Errorf("delete s3://%s/%s if its ETag is %s: %w", s.bucket, key, etag, classify(err))
		}
		return nil
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key, IfMatch: aws.String(etag)})
	if err != nil {
		return fmt.Errorf("delete s3://%s/%s if its ETag is %s: %w", s.bucket, key, etag, classify(err))
	}
	return nil
}

// DeleteBatchIf deletes each key only if it still has its ETag, and returns
// the keys not deleted with the reason (DeletePreconditionFailed when the ETag
// differs, DeleteNotFound when the object is gone, on servers that say so:
// some answer a conditional delete of a missing key with success). It uses one
// DeleteObjects call where the server enforces per-object ETags, and
// conditional single deletes elsewhere (DeleteIf: a read first where the
// server does not enforce If-Match either).
func (s *Store) DeleteBatchIf(ctx context.Context, etags map[string]string, concurrency int) (map[string]DeleteFailure, error) {
	failed := map[string]DeleteFailure{}
	if len(etags) == 0 {
		return failed, nil
	}
	if len(etags) > 1000 {
		return nil, fmt.Errorf("delete batch: %d keys, S3 takes at most 1000", len(etags))
	}
	c := s.Capabilities()
	if c.ConditionalBatchDelete {
		ids := make([]types.ObjectIdentifier, 0, len(etags))
		for k, e := range etags {
			ids = append(ids, types.ObjectIdentifier{Key: aws.String(k), ETag: aws.String(e)})
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &s.bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return nil, fmt.Errorf("delete %d objects from %s: %w", len(etags), s.bucket, classify(err))
		}
		for _, e := range out.Errors {
			failed[aws.ToString(e.Key)] = deleteFailure(e)
		}
		return failed, nil
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	for k, e := range etags {
		g.Go(func() error {
			err := s.DeleteIf(gctx, k, e)
			if err == nil {
				return nil
			}
			f := DeleteFailure{Message: err.Error()}
			switch {
			case errors.Is(err, ErrPrecondition):
				f.Reason = DeletePreconditionFailed
			case errors.Is(err, ErrNotFound):
				f.Reason = DeleteNotFound
			default:
				return err
			}
			var ae smithy.APIError
			if errors.As(err, &ae) {
				f.Code = ae.ErrorCode()
			}
			mu.Lock()
			failed[k] = f
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return failed, nil
}
