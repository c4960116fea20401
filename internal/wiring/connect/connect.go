// Package connect opens what a command needs (database, bucket, queues) from
// the common configuration, so that the mains stay thin and every binary
// connects the same way.
package connect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/pipeline/s3limit"
	"github.com/keymigrate/keymigrate/internal/wiring/awsconf"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
)

// Deps are the opened dependencies. Fields a command did not ask for are nil.
type Deps struct {
	Store   *ledger.Store
	AWS     aws.Config
	Objects *objstore.Store
	Queue   *queue.Queue
	DLQ     *queue.Queue
}

// Options say what to open and how.
type Options struct {
	Need config.Need
	// CheckSchema refuses to start when the ledger schema is missing or old.
	CheckSchema bool
	// MaxConns bounds database connections (unless DBMaxConns is set) and
	// idle HTTP connections.
	MaxConns int
	// DBMaxConns, if set, bounds database connections on its own: a worker's
	// pool does not grow with its concurrency (docs/performance-database.md).
	DBMaxConns int
	// LockTimeout and StatementTimeout are set on every database session.
	LockTimeout, StatementTimeout time.Duration
	// TimeoutsFromServer: the server sets the timeouts (PgBouncer); they are
	// checked, not sent (ledger.Options).
	TimeoutsFromServer bool
	// GenericPlans: statements prepared and planned once per connection
	// (ledger.Options); the worker sets it.
	GenericPlans bool
	Objects      objstore.Options
	// Metrics, if set, counts S3 throttling responses.
	Metrics *observe.Metrics
	// PaceS3 holds S3 requests to the rate S3 accepts once it throttles
	// (internal/pipeline/s3limit); the worker sets it.
	PaceS3 bool
	// Component names the program in recorded AWS calls
	// (awsconf.EnvRecordCalls); the executable's name when empty.
	Component string
}

// Open validates the configuration, then opens what o.Need names.
func Open(ctx context.Context, c *config.Common, o Options) (*Deps, error) {
	if err := c.Check(o.Need); err != nil {
		return nil, err
	}
	d := &Deps{}
	if o.Need.DB {
		dbConns := o.MaxConns
		if o.DBMaxConns > 0 {
			dbConns = o.DBMaxConns
		}
		st, err := ledger.OpenWith(ctx, c.DatabaseURL, ledger.Options{MaxConns: dbConns, LockTimeout: o.LockTimeout, StatementTimeout: o.StatementTimeout, TimeoutsFromServer: o.TimeoutsFromServer, GenericPlans: o.GenericPlans})
		if err != nil {
			return nil, err
		}
		d.Store = st
		if o.CheckSchema {
			if err := st.CheckSchema(ctx); err != nil {
				st.Close()
				if errors.Is(err, ledger.ErrSchemaOutdated) {
					return nil, fmt.Errorf("%w: run `migratectl setup` (or `migratectl setup --only ledger`) first", err)
				}
				return nil, err
			}
		}
	}
	if o.Need.Bucket || o.Need.Queue || o.Need.DLQ {
		ao := awsconf.Options{Region: c.Region, PathStyle: c.PathStyle, MaxConns: max(o.MaxConns, 16), Component: o.Component}
		if ao.Component == "" {
			ao.Component = filepath.Base(os.Args[0])
		}
		if o.Metrics != nil {
			ao.OnThrottle = o.Metrics.Throttle
		}
		if o.PaceS3 {
			ao.Limiter = s3limit.New(s3limit.Options{OnChange: func(limit float64) { o.Metrics.Set(observe.S3RateG, limit) }})
		}
		cfg, err := awsconf.Load(ctx, ao)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.AWS = cfg
		if o.Need.Bucket {
			d.Objects = objstore.New(awsconf.S3(cfg, ao), c.Bucket, o.Objects)
		}
		sqsClient := awsconf.SQS(cfg)
		if o.Need.Queue {
			d.Queue = queue.New(sqsClient, c.QueueURL)
		}
		if o.Need.DLQ {
			d.DLQ = queue.New(sqsClient, c.DLQURL)
		}
	}
	return d, nil
}

// Close releases the database connections.
func (d *Deps) Close() {
	if d != nil && d.Store != nil {
		d.Store.Close()
	}
}

// Describe says where the dependencies point, for a start-up log line.
func Describe(c *config.Common) string {
	return fmt.Sprintf("bucket=%s queue=%s dlq=%s", c.Bucket, c.QueueURL, c.DLQURL)
}

// Checks are the readiness checks of what d opened: the database answers, the
// bucket and the queues are reachable with these credentials.
func (d *Deps) Checks() map[string]observe.Check {
	checks := map[string]observe.Check{}
	if d.Store != nil {
		checks["postgres"] = func(ctx context.Context) error { return d.Store.Pool().Ping(ctx) }
	}
	if d.Objects != nil {
		checks["s3"] = func(ctx context.Context) error {
			_, err := d.Objects.Exists(ctx, "users/.keymigrate-readyz")
			return err
		}
	}
	if d.Queue != nil {
		checks["sqs"] = func(ctx context.Context) error {
			_, err := d.Queue.Depth(ctx)
			return err
		}
	}
	return checks
}
