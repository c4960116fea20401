package objstore

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
)

// MinIO answers GetBucketOwnershipControls with 501 NotImplemented. The probe
// must take that as "per-object ACLs may apply" (and report them), not fail:
// a probe that fails is never remembered, so every worker start probed again
// and a worker killed mid-probe left probe objects under users/ (the 30-minute
// soak on MinIO, seed 20261130).
func TestOwnershipControlsNotImplementedMeansACLsApply(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotImplemented)
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not implemented</Message></Error>`))
	}))
	defer srv.Close()
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
	})
	acls, err := New(client, "b", Options{}).aclsEnabled(context.Background())
	require.NoError(t, err)
	require.True(t, acls)
}
