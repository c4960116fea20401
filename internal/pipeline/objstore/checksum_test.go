package objstore

import (
	"context"
	"encoding/base64"
	"errors"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"
)

// TestSameBytesTellsAStoredChecksumMismatch plays a server that stores an
// object whose bytes do not match its stored CRC32 (what versitygw's
// UploadPartCopy once produced): the SDK refuses the read, and verification
// reports the copy as not faithful, with the reason, instead of failing as if
// S3 were out of reach.
func TestSameBytesTellsAStoredChecksumMismatch(t *testing.T) {
	t.Parallel()
	body := []byte("the same bytes in both objects")
	sum := crc32.ChecksumIEEE(body)
	good := base64.StdEncoding.EncodeToString([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusNotImplemented)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("ETag", `"abc-2"`)
		if strings.HasSuffix(r.URL.Path, "/bad") {
			w.Header().Set("x-amz-checksum-crc32", "AAAAAA==")
		} else {
			w.Header().Set("x-amz-checksum-crc32", good)
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
		// What config.LoadDefaultConfig (awsconf) gives every client.
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	})
	st := New(client, "b", Options{})
	ctx := context.Background()
	src := Info{Key: "src", ETag: `"abc-2"`, Size: int64(len(body))}
	same := Info{Key: "same", ETag: `"abc-2"`, Size: int64(len(body))}
	bad := Info{Key: "bad", ETag: `"abc-2"`, Size: int64(len(body))}

	ok, err := st.SameBytes(ctx, src, same)
	require.NoError(t, err)
	require.True(t, ok)

	_, err = st.SameBytes(ctx, src, bad)
	require.True(t, errors.Is(err, ErrStoredChecksum), "a read the SDK refused for its checksum: %v", err)
	require.Contains(t, err.Error(), "s3://b/bad")

	v, err := st.Verify(ctx, src, bad)
	require.NoError(t, err, "a copy whose bytes do not match its checksum is a verdict, not an outage")
	require.False(t, v.Equal)
	require.Contains(t, v.Reason, ErrStoredChecksum.Error())
}
