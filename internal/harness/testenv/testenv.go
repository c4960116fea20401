// Package testenv gives integration tests their own isolated slice of the real
// servers: a fresh Postgres database (with the ledger migrated and the
// development photos table), a fresh S3 bucket and a fresh pair of SQS queues.
//
// The servers are found through the environment that `make test` (and
// deploy/local/stack.sh env) sets: KEYMIGRATE_TEST_DATABASE_URL,
// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SQS and AWS credentials. Without them a
// test is skipped locally, and fails under CI=true, so that CI can never pass by
// skipping the tests that matter. With -short they are always skipped (make
// test-unit).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/wiring/awsconf"
)

// EnvDatabaseURL names a database on the test server with the right to create
// databases; each test gets its own.
const EnvDatabaseURL = "KEYMIGRATE_TEST_DATABASE_URL"

// Require skips (or, under CI, fails) the test when the servers are not
// configured.
func Require(t testing.TB) {
	t.Helper()
	requireEnv(t, EnvDatabaseURL, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS")
}

// EnvSQS names the SQS server the stack runs, as deploy/local/stack.sh env
// exports it: fauxqs (the default) or local-aws-sqs (KEYMIGRATE_SQS=local-aws-sqs).
const EnvSQS = "KEYMIGRATE_SQS"

// The SQS servers of the local stack (docs/local-stack.md says where they
// differ from SQS and from each other).
const (
	SQSFauxqs      = "fauxqs"
	SQSLocalAWSSQS = "local-aws-sqs"
)

// SQSServer is the SQS server the tests run against: $KEYMIGRATE_SQS, or
// fauxqs when it is unset.
func SQSServer() string {
	if s := os.Getenv(EnvSQS); s != "" {
		return s
	}
	return SQSFauxqs
}

// SkipOnSQS skips the test when it runs against the named SQS server, saying
// why: for a behaviour of that server that SQS does not share.
func SkipOnSQS(t testing.TB, server, why string) {
	t.Helper()
	if SQSServer() == server {
		t.Skipf("not on %s: %s", server, why)
	}
}

// RequireS3 is Require for a test that only needs the S3 server.
func RequireS3(t testing.TB) {
	t.Helper()
	requireEnv(t, "AWS_ENDPOINT_URL_S3")
}

// RequirePostgres is Require for a test that only needs the Postgres server.
func RequirePostgres(t testing.TB) {
	t.Helper()
	requireEnv(t, EnvDatabaseURL)
}

func requireEnv(t testing.TB, vars ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	var missing []string
	for _, v := range vars {
		if os.Getenv(v) == "" {
			missing = append(missing, v)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("integration test needs %s: run it with `make test`, or `eval \"$(deploy/local/stack.sh env)\"` after `make stack-up`", strings.Join(missing, ", "))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Options tune an Env.
type Options struct {
	MaxReceiveCount   int           // default 5
	VisibilityTimeout time.Duration // default 30s
	Objects           objstore.Options
}

// Env is one test's isolated stack.
type Env struct {
	Name        string // unique suffix used for the database, bucket and queues
	DatabaseURL string
	Store       *ledger.Store
	AWS         aws.Config
	S3          *s3.Client
	SQS         *sqs.Client
	Objects     *objstore.Store
	Queue       *queue.Queue
	DLQ         *queue.Queue
}

// New creates the isolated stack and removes the database when the test ends.
// Buckets and queues are left behind: they are cheap, named uniquely, and
// useful when a failure needs looking at.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	Require(t)
	ctx := context.Background()
	if o.MaxReceiveCount == 0 {
		o.MaxReceiveCount = 5
	}
	if o.VisibilityTimeout == 0 {
		o.VisibilityTimeout = 30 * time.Second
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "kmt-" + hex.EncodeToString(b[:])
	e := &Env{Name: name}

	e.DatabaseURL = createDatabase(t, strings.ReplaceAll(name, "-", "_"))
	st, err := ledger.Open(ctx, e.DatabaseURL, 10)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx)
	require.NoError(t, err)
	require.NoError(t, seed.EnsurePhotosTable(ctx, st.Pool()))
	e.Store = st

	e.AWS, err = awsconf.Load(ctx, awsconf.Options{Region: "us-east-1", MaxConns: 64})
	require.NoError(t, err)
	e.S3 = awsconf.S3(e.AWS, awsconf.Options{PathStyle: true})
	e.SQS = awsconf.SQS(e.AWS)
	e.Objects = objstore.New(e.S3, name, o.Objects)
	require.NoError(t, e.Objects.EnsureBucket(ctx))

	mainURL, dlqURL, err := queue.Setup(ctx, e.SQS, queue.SetupInput{
		Name: name, DLQName: name + "-dlq", MaxReceiveCount: o.MaxReceiveCount, VisibilityTimeout: o.VisibilityTimeout,
	})
	require.NoError(t, err)
	e.Queue = queue.New(e.SQS, mainURL)
	e.DLQ = queue.New(e.SQS, dlqURL)
	return e
}

// NewBucket creates a fresh, uniquely named bucket on the test S3 server for
// a test that needs nothing else of the stack, and returns a client for it.
// Like New's, the bucket is left behind.
func NewBucket(t testing.TB) (*s3.Client, string) {
	t.Helper()
	RequireS3(t)
	ctx := context.Background()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "kmt-" + hex.EncodeToString(b[:])
	cfg, err := awsconf.Load(ctx, awsconf.Options{Region: "us-east-1", MaxConns: 16})
	require.NoError(t, err)
	client := awsconf.S3(cfg, awsconf.Options{PathStyle: true})
	require.NoError(t, objstore.New(client, name, objstore.Options{}).EnsureBucket(ctx))
	return client, name
}

// NewDatabase creates an empty database on the test server for this test
// alone (no ledger, no photos table: for tests that build their own, such as
// the scale harness's loader) and drops it when the test ends. It returns
// the database's URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	Require(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	return createDatabase(t, "kmt_"+hex.EncodeToString(b[:]))
}

// createDatabase creates a fresh database on the test server and drops it when
// the test ends, returning its URL.
func createDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx := context.Background()
	admin := os.Getenv(EnvDatabaseURL)
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err, "connect to %s", EnvDatabaseURL)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	require.NoError(t, err)
	u.Path = "/" + name
	return u.String()
}

// Env returns the environment a child process (a built binary) needs to reach
// this stack.
func (e *Env) Environ() []string {
	env := os.Environ()
	return append(env,
		"DATABASE_URL="+e.DatabaseURL,
		"KEYMIGRATE_BUCKET="+e.Objects.Bucket(),
		"KEYMIGRATE_QUEUE_URL="+e.Queue.URL(),
		"KEYMIGRATE_DLQ_URL="+e.DLQ.URL(),
		"KEYMIGRATE_LOG_FORMAT=json",
	)
}

// LoseMessages deletes every message of the main queue, as an outage or a
// recreated queue would lose them, and returns how many it deleted. Not
// PurgeQueue: SQS may take up to 60 seconds to carry that out (local-aws-sqs
// always takes 60), and delivers the messages meanwhile.
func (e *Env) LoseMessages(t testing.TB) int {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	lost := 0
	for {
		msgs, err := e.Queue.Receive(ctx, queue.MaxBatch, 0, time.Minute)
		require.NoError(t, err)
		for _, m := range msgs {
			require.NoError(t, e.Queue.Delete(ctx, m.ReceiptHandle))
		}
		lost += len(msgs)
		if len(msgs) > 0 {
			continue
		}
		// A receive without a wait may miss messages; the depth does not.
		d, err := e.Queue.Depth(ctx)
		require.NoError(t, err)
		if d.Total() == 0 {
			return lost
		}
		require.True(t, time.Now().Before(deadline), "lose messages: the queue still holds %+v after 30s", d)
		time.Sleep(100 * time.Millisecond)
	}
}

// Seed writes seeded legacy photos into this stack.
func (e *Env) Seed(t testing.TB, o seed.Options) seed.Result {
	t.Helper()
	res, err := seed.Run(context.Background(), e.Store.Pool(), e.Objects, o)
	require.NoError(t, err)
	return res
}

// Photo reads one photos row.
func (e *Env) Photo(t testing.TB, id string) ledger.Photo {
	t.Helper()
	p, err := e.Store.PhotoGet(context.Background(), id)
	require.NoError(t, err)
	return p
}

// InsertPhoto inserts a photos row directly.
func (e *Env) InsertPhoto(t testing.TB, id string, owner *string, original string, processed, thumbnail *string) {
	t.Helper()
	_, err := e.Store.Pool().Exec(context.Background(),
		`INSERT INTO photos (id, owner_id, original_key, processed_key, thumbnail_key) VALUES ($1, $2, $3, $4, $5)`,
		id, owner, original, processed, thumbnail)
	require.NoError(t, err)
}

// Put writes a small object.
func (e *Env) Put(t testing.TB, key string, body []byte, contentType string, meta map[string]string) {
	t.Helper()
	require.NoError(t, e.Objects.Put(context.Background(), objstore.PutInput{Key: key, Body: body, ContentType: contentType, Metadata: meta}))
}

// Ptr returns a pointer to s.
func Ptr(s string) *string { return &s }
