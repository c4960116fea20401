package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/pipeline/s3caps"
	"github.com/keymigrate/keymigrate/internal/wiring/awsconf"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/producer"
)

// Stack is the local stack a benchmark runs on. Credentials, the region and
// the SQS endpoint come from the environment, as for the binaries.
type Stack struct {
	// AdminDatabaseURL is a database on the Postgres server that backlogs
	// create their own databases from.
	AdminDatabaseURL string
	// S3Endpoint is the S3 server itself (seeding goes there directly; the
	// measured runs go through a proxy in front of it).
	S3Endpoint string

	aws aws.Config
	s3  *s3.Client
	sqs *sqs.Client
}

// OpenStack builds the clients of the stack.
func OpenStack(ctx context.Context, adminDatabaseURL, s3Endpoint string) (*Stack, error) {
	if adminDatabaseURL == "" || s3Endpoint == "" {
		return nil, errors.New("bench: the admin database URL and the S3 endpoint are required")
	}
	cfg, err := awsconf.Load(ctx, awsconf.Options{MaxConns: 64})
	if err != nil {
		return nil, err
	}
	return &Stack{
		AdminDatabaseURL: adminDatabaseURL,
		S3Endpoint:       s3Endpoint,
		aws:              cfg,
		s3:               s3Client(cfg, s3Endpoint, 64),
		sqs:              awsconf.SQS(cfg),
	}, nil
}

// s3Client is a path-style client of the S3 server at endpoint.
func s3Client(cfg aws.Config, endpoint string, maxConns int) *s3.Client {
	return awsconf.S3(cfg, awsconf.Options{PathStyle: true, MaxConns: maxConns}, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	})
}

// Backlog is a fresh database, bucket and pair of queues holding seeded
// legacy photos, every one of them enqueued: what a fleet starts from.
type Backlog struct {
	Name        string
	DatabaseURL string
	Store       *ledger.Store
	Objects     *objstore.Store // straight to the S3 server, not through the proxy
	QueueURL    string
	DLQURL      string
	Seeded      seed.Result
	Enqueued    int64

	stack  *Stack
	dbName string
}

// Queue is the backlog's queue, for a producer run.
func (b *Backlog) Queue() *queue.Queue { return queue.New(b.stack.sqs, b.QueueURL) }

// NewBacklog creates the database, bucket and queues called name (a lowercase
// DNS-style name), records which conditions the S3 server enforces (as
// `migratectl setup` does, so that the fleet does not probe), seeds photos
// legacy photos from seedValue, and enqueues them all.
func (s *Stack) NewBacklog(ctx context.Context, name string, photos int, seedValue uint64) (*Backlog, error) {
	return s.newBacklog(ctx, name, photos, seedValue, true)
}

// NewSeeded is NewBacklog without the enqueue: the photos wait for a
// producer run (a staged rollout's stages, StagedRun).
func (s *Stack) NewSeeded(ctx context.Context, name string, photos int, seedValue uint64) (*Backlog, error) {
	return s.newBacklog(ctx, name, photos, seedValue, false)
}

func (s *Stack) newBacklog(ctx context.Context, name string, photos int, seedValue uint64, enqueue bool) (b *Backlog, err error) {
	b = &Backlog{Name: name, stack: s, dbName: dbIdentifier(name)}
	defer func() {
		if err != nil {
			_ = b.Close(context.WithoutCancel(ctx))
			b = nil
		}
	}()
	if b.DatabaseURL, err = s.createDatabase(ctx, b.dbName); err != nil {
		return b, err
	}
	if b.Store, err = ledger.Open(ctx, b.DatabaseURL, 8); err != nil {
		return b, err
	}
	if _, err = b.Store.Migrate(ctx); err != nil {
		return b, err
	}
	if err = seed.EnsurePhotosTable(ctx, b.Store.Pool()); err != nil {
		return b, err
	}
	b.Objects = objstore.New(s.s3, name, objstore.DefaultOptions())
	if err = b.Objects.EnsureBucket(ctx); err != nil {
		return b, err
	}
	if _, err = s3caps.Resolve(ctx, b.Store, b.Objects, true); err != nil {
		return b, fmt.Errorf("probe the S3 server's conditions: %w", err)
	}
	if b.QueueURL, b.DLQURL, err = queue.Setup(ctx, s.sqs, queue.SetupInput{Name: name, DLQName: name + "-dlq", MaxReceiveCount: 10, VisibilityTimeout: time.Minute}); err != nil {
		return b, err
	}
	if b.Seeded, err = seed.Run(ctx, b.Store.Pool(), b.Objects, seed.Options{Photos: photos, Seed: seedValue}); err != nil {
		return b, fmt.Errorf("seed: %w", err)
	}
	if !enqueue {
		return b, nil
	}
	sum, err := producer.New(b.Store, queue.New(s.sqs, b.QueueURL), zap.NewNop(), producer.Config{}).Run(ctx)
	if err != nil {
		return b, fmt.Errorf("enqueue: %w", err)
	}
	b.Enqueued = sum.Enqueued
	return b, nil
}

// Environ is the environment of a worker process migrating this backlog with
// its S3 requests sent to s3Endpoint.
func (b *Backlog) Environ(base []string, s3Endpoint string) []string {
	return append(base[:len(base):len(base)],
		config.EnvDatabaseURL+"="+b.DatabaseURL,
		config.EnvBucket+"="+b.Name,
		config.EnvQueueURL+"="+b.QueueURL,
		config.EnvDLQURL+"="+b.DLQURL,
		"AWS_ENDPOINT_URL_S3="+s3Endpoint,
		config.EnvLogFormat+"=json",
	)
}

// Close deletes the backlog's objects, bucket, queues and database.
func (b *Backlog) Close(ctx context.Context) error {
	var errs []error
	if b.Store != nil {
		b.Store.Close()
	}
	if b.Objects != nil {
		errs = append(errs, b.emptyBucket(ctx))
		if _, err := b.stack.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(b.Name)}); err != nil {
			errs = append(errs, fmt.Errorf("delete bucket %s: %w", b.Name, err))
		}
	}
	for _, q := range []string{b.Name, b.Name + "-dlq"} {
		errs = append(errs, queue.DeleteByName(ctx, b.stack.sqs, q))
	}
	if b.DatabaseURL != "" {
		errs = append(errs, b.stack.dropDatabase(ctx, b.dbName))
	}
	return errors.Join(errs...)
}

func (b *Backlog) emptyBucket(ctx context.Context) error {
	var keys []string
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		failed, err := b.Objects.DeleteBatch(ctx, keys)
		if err != nil {
			return err
		}
		if len(failed) > 0 {
			return fmt.Errorf("empty bucket %s: %d objects not deleted", b.Name, len(failed))
		}
		keys = keys[:0]
		return nil
	}
	if err := b.Objects.ListEach(ctx, "", func(k string, _ int64, _ string) error {
		keys = append(keys, k)
		if len(keys) == 1000 {
			return flush()
		}
		return nil
	}); err != nil {
		return fmt.Errorf("empty bucket %s: %w", b.Name, err)
	}
	return flush()
}

// DLQDepth is the number of messages in the backlog's dead-letter queue.
func (b *Backlog) DLQDepth(ctx context.Context) (int64, error) {
	d, err := queue.New(b.stack.sqs, b.DLQURL).Depth(ctx)
	if err != nil {
		return 0, err
	}
	return d.Total(), nil
}

// MovedSources are the legacy keys of the objects the fleet moved and
// verified: what the peers copy too.
func (b *Backlog) MovedSources(ctx context.Context) ([]string, error) {
	moved, err := committedMoves(ctx, b.Store)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(moved))
	for _, m := range moved {
		keys = append(keys, m.OldKey)
	}
	return keys, nil
}

func dbIdentifier(name string) string {
	b := []byte(name)
	for i, c := range b {
		if c == '-' || c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

func (s *Stack) createDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.AdminDatabaseURL)
	if err != nil {
		return "", fmt.Errorf("connect to the admin database: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(s.AdminDatabaseURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

func (s *Stack) dropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.AdminDatabaseURL)
	if err != nil {
		return fmt.Errorf("connect to the admin database: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}
