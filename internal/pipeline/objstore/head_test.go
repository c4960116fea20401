package objstore

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
)

// TestHeadTellsForbiddenFromMissing plays S3 answering HEAD with 403 for keys
// the caller could read if they existed (no unconditional ListBucket): a
// listing then decides between "missing" and "really forbidden".
func TestHeadTellsForbiddenFromMissing(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusForbidden)
		case r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2":
			prefix := r.URL.Query().Get("prefix")
			body := `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix>` + prefix + `</Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`
			if strings.HasSuffix(prefix, "exists.jpg") {
				body = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix>` + prefix + `</Prefix><KeyCount>1</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>` + prefix + `</Key><Size>3</Size></Contents></ListBucketResult>`
			}
			w.Header().Set("Content-Type", "application/xml")
			_, _ = w.Write([]byte(body))
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	defer srv.Close()
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
	})
	st := New(client, "b", Options{})

	_, err := st.Head(context.Background(), "meta/missing.json")
	require.True(t, errors.Is(err, ErrNotFound), "a 403 on a key a listing does not show is a missing object: %v", err)
	_, err = st.Head(context.Background(), "uploaded/exists.jpg")
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrNotFound), "a 403 on a key that exists is a real denial: %v", err)
}
