package failure_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
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
		{"Postgres connection closed", fmt.Errorf("begin attempt on photo p: %w", pgconn.ErrConnClosed), "postgres", true},
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

// TestDependencyKnowsPostgresOutagesAsPgxReportsThem takes the database away
// for real, in each way a fleet meets (nothing listening, the server ending
// the session, the network cut during a query and during start-up), and
// checks that what pgx then returns is an outage of Postgres: the worker stops
// taking messages instead of failing the photos it holds.
func TestDependencyKnowsPostgresOutagesAsPgxReportsThem(t *testing.T) {
	testenv.RequirePostgres(t)
	t.Parallel()
	ctx := context.Background()
	dbURL := os.Getenv(testenv.EnvDatabaseURL)
	outage := func(what string, err error) {
		t.Helper()
		require.Error(t, err, what)
		dep, ok := failure.Dependency(err)
		require.True(t, ok, "%s is an outage: %v", what, err)
		require.Equal(t, failure.Postgres, dep, what)
	}
	connect := func(u string) *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, u)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	var connectErr *pgconn.ConnectError

	// Nothing listens where the database should be.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = pgx.Connect(ctx, "postgres://postgres@"+closed+"/test?sslmode=disable&connect_timeout=5")
	require.ErrorAs(t, err, &connectErr)
	outage("a refused connection", err)

	// The server ends the session (a restart, an administrator, a failover).
	conn := connect(dbURL)
	var pid uint32
	require.NoError(t, conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid))
	_, err = connect(dbURL).Exec(ctx, "select pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err = conn.Exec(ctx, "select 1"); return err != nil }, 10*time.Second, 20*time.Millisecond)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "57P01", pgErr.Code)
	outage("a session the server terminated", err)
	_, err = conn.Exec(ctx, "select 1")
	require.ErrorIs(t, err, pgconn.ErrConnClosed)
	outage("a connection the server closed", err)

	// The network goes away during a query, then refuses new connections.
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	cut := testenv.NewCuttable(t, u.Host)
	conn = connect(cut.URL(t, dbURL))
	time.AfterFunc(200*time.Millisecond, cut.Cut)
	rows, err := conn.Query(ctx, "select pg_sleep(10)")
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
	}
	t.Logf("a query cut off returned %v", err)
	outage("a connection cut during a query", err)
	_, err = conn.Exec(ctx, "select 1")
	require.ErrorIs(t, err, pgconn.ErrConnClosed)
	outage("a connection the network closed", err)
	_, err = pgx.Connect(ctx, cut.URL(t, dbURL))
	require.ErrorAs(t, err, &connectErr)
	outage("a connection reset during start-up", err)
}
