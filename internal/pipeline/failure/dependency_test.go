package failure_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/failure"
)

// awsErr builds the error chain the SDK returns for an S3 or SQS call.
func awsErr(service string, status int, code string) error {
	var inner error = &smithy.GenericAPIError{Code: code, Message: "m"}
	if code == "" {
		inner = io.EOF
	}
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: status}}
	return fmt.Errorf("wrapped: %w", &smithy.OperationError{ServiceID: service, OperationName: "Op",
		Err: &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: resp, Err: inner}}})
}

func TestDependencyTellsOutagesFromPhotoFailures(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		err    error
		dep    string
		outage bool
	}{
		{"S3 503 SlowDown", awsErr("S3", 503, "SlowDown"), "s3", true},
		{"S3 500", awsErr("S3", 500, "InternalError"), "s3", true},
		{"S3 no response", awsErr("S3", 0, ""), "s3", true},
		{"S3 404", awsErr("S3", 404, "NoSuchKey"), "", false},
		{"S3 412", awsErr("S3", 412, "PreconditionFailed"), "", false},
		{"S3 403", awsErr("S3", 403, "AccessDenied"), "", false},
		{"SQS 500", awsErr("SQS", 500, "InternalError"), "sqs", true},
		{"SQS throttled", awsErr("SQS", 400, "ThrottlingException"), "sqs", true},
		{"Postgres connection refused", &pgconn.ConnectError{}, "postgres", true},
		{"Postgres admin shutdown", &pgconn.PgError{Code: "57P01"}, "postgres", true},
		{"Postgres statement timeout", &pgconn.PgError{Code: "57014"}, "postgres", true},
		{"Postgres unique violation", &pgconn.PgError{Code: "23505"}, "", false},
		{"Postgres lock timeout", &pgconn.PgError{Code: "55P03"}, "", false},
		{"connection reset", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), "postgres", true},
		{"a verify mismatch", errors.New("copy does not match its source"), "", false},
		{"permanent", failure.Permanentf(failure.SourceMissing, "gone"), "", false},
		{"cancelled", context.Canceled, "", false},
	} {
		dep, outage := failure.Dependency(c.err)
		require.Equal(t, c.outage, outage, c.name)
		if outage {
			require.Equal(t, c.dep, dep, c.name)
		}
	}
}
