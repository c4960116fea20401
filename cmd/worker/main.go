// Command worker migrates photos: it receives messages from the main queue,
// copies and verifies each photo's objects, swaps its keys in Postgres, and
// dead-letters what cannot be migrated. Run as many as the bucket and the
// database can take; they coordinate only through the queue and the ledger.
package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/wiring/cli"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
	"github.com/keymigrate/keymigrate/internal/wiring/observe"
	"github.com/keymigrate/keymigrate/worker"
)

func main() { cli.Execute(newCommand()) }

// longHelp is the worker's --help.
const longHelp = `worker receives one message per photo from the main queue and, for each photo:
plans the moves (original, restored, thumbnail, metadata, animations), copies
each object server-side to its user-scoped key pinned to the source's ETag,
verifies the copy (size, content type, metadata, and checksum or bytes), then
swaps the row's keys in one compare-and-swap transaction with the ledger, and
only then deletes the message. Legacy objects are never deleted here.

Permanent failures go to the DLQ at once with a reason; transient ones are
retried with backoff and then handed back to the queue. A dependency that is
down (S3, Postgres, SQS) is not the photo's fault: the worker takes no message
until it answers again, and hands back what it holds as fresh messages, so an
outage spends none of their receives. On SIGTERM the worker stops receiving,
finishes what it holds within --shutdown-grace, hands back the rest, and exits
0. Every worker also looks for photos whose messages were lost (see
docs/guarantees.md).`

// newCommand builds the worker command: its help, its flags and what it runs.
func newCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Migrate photos from the queue: copy, verify, swap keys, dead-letter failures",
		Long:  longHelp,
		Args:  cobra.NoArgs,
	}
	o := bindFlags(cmd)
	cmd.RunE = func(*cobra.Command, []string) error { return o.run() }
	return cmd
}

// options are the worker's flags.
type options struct {
	svc                           *cli.Service
	cfg                           worker.Config
	obj                           objstore.Options
	destCheck                     string
	dbMaxConns                    int
	genericPlans                  bool
	timeoutsFromServer            bool
	lockTimeout, statementTimeout time.Duration
	cpuProfile                    string
}

// bindFlags registers the worker's flags on cmd, with the defaults of
// production.
func bindFlags(cmd *cobra.Command) *options {
	o := &options{
		svc:              cli.NewService(cmd, "address of the /healthz, /readyz and /metrics server, e.g. :9090 (empty: none)"),
		cfg:              worker.DefaultConfig(),
		obj:              objstore.DefaultOptions(),
		destCheck:        string(objstore.DestinationAuto),
		dbMaxConns:       8,
		lockTimeout:      5 * time.Second,
		statementTimeout: 30 * time.Second,
	}
	b, cfg, obj := o.svc.Binder, &o.cfg, &o.obj
	b.Int(&cfg.Concurrency, "concurrency", "KEYMIGRATE_CONCURRENCY", cfg.Concurrency, "photos processed at once")
	b.Int(&cfg.ObjectConcurrency, "object-concurrency", "KEYMIGRATE_OBJECT_CONCURRENCY", cfg.ObjectConcurrency, "objects of one photo copied and verified at once")
	b.Duration(&cfg.VisibilityTimeout, "visibility-timeout", "KEYMIGRATE_VISIBILITY_TIMEOUT", cfg.VisibilityTimeout, "how long a received message stays hidden; extended while its photo is in hand")
	b.Duration(&cfg.HeartbeatInterval, "heartbeat", "KEYMIGRATE_HEARTBEAT", 0, "how often visibility is extended (default: a third of --visibility-timeout)")
	b.Duration(&cfg.WaitTime, "wait-time", "KEYMIGRATE_WAIT_TIME", cfg.WaitTime, "long-poll wait per receive (at most 20s)")
	b.Duration(&cfg.ShutdownGrace, "shutdown-grace", "KEYMIGRATE_SHUTDOWN_GRACE", cfg.ShutdownGrace, "after SIGTERM, how long photos in hand may finish before they are released")
	b.Duration(&cfg.RetryMaxElapsed, "retry-max-elapsed", "KEYMIGRATE_RETRY_MAX_ELAPSED", cfg.RetryMaxElapsed, "how long a transient failure is retried inside the worker before the message is handed back")
	b.Int(&cfg.MaxReplans, "max-replans", "KEYMIGRATE_MAX_REPLANS", cfg.MaxReplans, "re-plans allowed when the app changes a row during its migration, before dead-lettering")
	b.Duration(&cfg.ControlInterval, "control-interval", "KEYMIGRATE_CONTROL_INTERVAL", cfg.ControlInterval, "how often the pause/throttle record is read and the heartbeat written")
	b.Duration(&cfg.DependencyProbe, "dependency-probe", "KEYMIGRATE_DEPENDENCY_PROBE", cfg.DependencyProbe, "how often a dependency found down (S3, Postgres, SQS) is tried again; meanwhile the worker takes no message")
	b.Duration(&cfg.SweepInterval, "sweep-interval", "KEYMIGRATE_SWEEP_INTERVAL", cfg.SweepInterval, "how often the worker looks for photos whose queue messages were lost")
	b.Duration(&cfg.SweepAfter, "sweep-after", "KEYMIGRATE_SWEEP_AFTER", cfg.SweepAfter, "a photo enqueued (or in progress with no live worker) this long while the queue holds no message is enqueued again")
	b.Bool(&cfg.Drain, "drain", "KEYMIGRATE_DRAIN", false, "exit once the queue stays empty and nothing is in hand (batch runs, the demo)")
	b.Bytes(&obj.MultipartThreshold, "multipart-threshold", "KEYMIGRATE_MULTIPART_THRESHOLD", obj.MultipartThreshold, "objects larger than this are copied with UploadPartCopy")
	b.Bytes(&obj.PartSize, "part-size", "KEYMIGRATE_PART_SIZE", obj.PartSize, "part size of multipart copies (at least 5MiB)")
	b.Bool(&cfg.RecheckSources, "recheck-sources", "KEYMIGRATE_RECHECK_SOURCES", cfg.RecheckSources, "read every legacy object's ETag again right before the swap and re-plan if it changed (one HEAD per object; unnecessary once Phase 1 forbids legacy writes)")
	b.Bool(&cfg.CopyFirst, "copy-first", "KEYMIGRATE_COPY_FIRST", cfg.CopyFirst, "copy each object before reading its source, and prove the copy by a read of the source made after it (the recheck), where the server keeps every header on a copy and the bucket has no per-object ACLs: one HEAD and one round trip less per object; false reads and pins every source first")
	b.String(&o.destCheck, "destination-check", "KEYMIGRATE_DESTINATION_CHECK", o.destCheck, "how copies avoid replacing objects keymigrate did not write: conditional (If-None-Match on CopyObject, as S3 enforces), head (read the destination first), or auto (probe the server once)")
	b.Int(&obj.PartConcurrency, "part-concurrency", "KEYMIGRATE_PART_CONCURRENCY", obj.PartConcurrency, "parts of one object copied at once")
	b.Int(&o.dbMaxConns, "db-max-conns", "KEYMIGRATE_DB_MAX_CONNS", o.dbMaxConns, "Postgres connections of this worker, whatever its --concurrency: photos wait for a connection per statement and hold none across an S3 call (50 pods x 8 = 400 connections, or far fewer through PgBouncer)")
	b.Bool(&o.timeoutsFromServer, "db-timeouts-from-server", "KEYMIGRATE_DB_TIMEOUTS_FROM_SERVER", false, "do not send --db-lock-timeout and --db-statement-timeout when connecting (PgBouncer refuses them): the server sets them (ALTER ROLE … SET, or PgBouncer's connect_query) and every new connection checks that they are the values asked for")
	b.Bool(&o.genericPlans, "db-generic-plans", "KEYMIGRATE_DB_GENERIC_PLANS", true, "prepare each statement once per connection and plan it once, without sequential scans, instead of on every call (about 40% less Postgres CPU per photo); needs a direct connection or a proxy that keeps a session's prepared statements (RDS Proxy pins such sessions), so it is off with --db-timeouts-from-server (PgBouncer)")
	b.Duration(&o.lockTimeout, "db-lock-timeout", "KEYMIGRATE_DB_LOCK_TIMEOUT", o.lockTimeout, "Postgres lock_timeout of the worker's sessions: a row the application keeps locked fails the statement (the photo is retried later) instead of holding the worker")
	b.Duration(&o.statementTimeout, "db-statement-timeout", "KEYMIGRATE_DB_STATEMENT_TIMEOUT", o.statementTimeout, "Postgres statement_timeout of the worker's sessions")
	cmd.Flags().StringVar(&o.cpuProfile, "cpu-profile", "", "write a Go CPU profile to this file (for performance work)")
	_ = cmd.Flags().MarkHidden("cpu-profile")
	return o
}

// run checks the flags, connects and runs the worker until a signal (or,
// with --drain, until the queue stays empty).
func (o *options) run() (err error) {
	if err := o.svc.Check(); err != nil {
		return err
	}
	if o.cpuProfile != "" {
		stop, err := cli.StartCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := o.cfg.Check(); err != nil {
		return err
	}
	if o.dbMaxConns < 2 {
		return fmt.Errorf("--db-max-conns %d: give at least 2 (the control loop and the photos share the pool)", o.dbMaxConns)
	}
	if o.obj.DestinationCheck, err = objstore.ParseDestinationCheck(o.destCheck); err != nil {
		return err
	}
	o.cfg.Metrics = observe.New()
	// HTTP connections kept idle for reuse: enough for every request a worker
	// can have in flight (each photo's objects, ObjectConcurrency at a time,
	// with up to three requests at once each: the two HEADs and the ACL read
	// of a settle), plus SQS and the control loop. With only --concurrency+4
	// the pool overflowed at every burst, and closing and re-dialling the
	// spare connections cost 3-4% of the worker's CPU
	// (docs/performance.md). It is a ceiling, not a pool size: idle
	// connections exist only after that many requests were in flight at once.
	httpConns := o.cfg.Concurrency*max(o.cfg.ObjectConcurrency, 1)*3 + 4
	ctx, run, err := o.svc.Start(connect.Options{
		Component:   "worker",
		Need:        config.Need{DB: true, Bucket: true, Queue: true, DLQ: true},
		CheckSchema: true, MaxConns: httpConns, DBMaxConns: o.dbMaxConns, Objects: o.obj, Metrics: o.cfg.Metrics,
		LockTimeout: o.lockTimeout, StatementTimeout: o.statementTimeout, TimeoutsFromServer: o.timeoutsFromServer, PaceS3: true,
		GenericPlans: o.genericPlans && !o.timeoutsFromServer,
	})
	if err != nil {
		return err
	}
	defer run.Close()
	run.Log.Info("worker connecting", zap.String("where", connect.Describe(o.svc.Common)))
	d := run.Deps
	return worker.New(d.Store, d.Objects, d.Queue, d.DLQ, run.Log, o.cfg).Run(ctx)
}
