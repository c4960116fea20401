package objstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// DestinationCheck says how a copy avoids replacing an object it did not write.
type DestinationCheck string

// The destination checks.
const (
	// DestinationAuto probes the server once (ResolveDestinationCheck).
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

// ProbePrefix is where the probe writes its two tiny objects. It is under
// users/ (the only prefix the worker may write) but can never collide with a
// photo, because ".keymigrate-probe" is not a valid user id.
const ProbePrefix = "users/.keymigrate-probe/"

// ConditionalCopy reports whether copies rely on the server's conditions.
func (s *Store) ConditionalCopy() bool { return s.conditional.Load() }

// ResolveDestinationCheck settles DestinationAuto by probing the server: it
// writes two objects, copies one onto the other with If-None-Match: *, and
// checks the copy was refused; then deletes both. Any doubt (an error, a
// server that accepts the copy) means DestinationHead. It returns the check in
// force.
func (s *Store) ResolveDestinationCheck(ctx context.Context) (DestinationCheck, error) {
	switch s.opts.DestinationCheck {
	case DestinationConditional:
		s.conditional.Store(true)
		return DestinationConditional, nil
	case DestinationHead:
		s.conditional.Store(false)
		return DestinationHead, nil
	}
	ok, err := s.probeConditionalCopy(ctx)
	s.conditional.Store(ok && err == nil)
	if s.conditional.Load() {
		return DestinationConditional, nil
	}
	return DestinationHead, err
}

func (s *Store) probeConditionalCopy(ctx context.Context) (bool, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	dir := ProbePrefix + hex.EncodeToString(b[:]) + "/"
	a, z := dir+"a", dir+"b"
	defer func() {
		_, _ = s.DeleteBatch(context.WithoutCancel(ctx), []string{a, z})
	}()
	for _, k := range []string{a, z} {
		if err := s.Put(ctx, PutInput{Key: k, Body: []byte(k)}); err != nil {
			return false, fmt.Errorf("probe conditional copy: %w", err)
		}
	}
	_, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: &s.bucket, Key: aws.String(z), CopySource: aws.String(copySource(s.bucket, a)), IfNoneMatch: aws.String("*"),
	})
	switch {
	case err == nil:
		return false, nil
	case errors.Is(classify(err), ErrPrecondition):
		return true, nil
	}
	return false, fmt.Errorf("probe conditional copy: %w", err)
}
