package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/pipeline/s3caps"
	"github.com/keymigrate/keymigrate/internal/wiring/awsconf"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func yesNo(b bool) string {
	if b {
		return "enforced"
	}
	return "not enforced"
}

func (a *app) setupCmd() *cobra.Command {
	var (
		queueName, dlqName string
		maxReceive         int
		visibility         time.Duration
		createBucket       bool
		devPhotosTable     bool
		printEnv           bool
	)
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Create or upgrade the ledger schema and the queues (idempotent)",
		Long: `setup applies the ledger's schema migrations (in the keymigrate schema), checks
the bucket (creating it with --create-bucket, for local stacks), and creates the
main queue and the dead-letter queue with a redrive policy. Running it again is
safe: it converges on the given settings.

It prints the queue URLs; with --print-env as shell exports, for scripts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: 2}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				applied, err := deps.Store.Migrate(ctx)
				if err != nil {
					return err
				}
				if devPhotosTable {
					if err := seed.EnsurePhotosTable(ctx, deps.Store.Pool()); err != nil {
						return err
					}
				}
				if createBucket {
					if err := deps.Objects.EnsureBucket(ctx); err != nil {
						return err
					}
				} else if _, err := deps.Objects.List(ctx, objstore.ProbePrefix); err != nil {
					return fmt.Errorf("bucket %s is not readable (use --create-bucket on a local stack): %w", deps.Objects.Bucket(), err)
				}
				// Learn, once for the fleet, which conditions the server enforces.
				caps, capsErr := s3caps.Resolve(ctx, deps.Store, deps.Objects, true)
				mainURL, dlqURL, err := queue.Setup(ctx, awsconf.SQS(deps.AWS), queue.SetupInput{
					Name: queueName, DLQName: dlqName, MaxReceiveCount: maxReceive, VisibilityTimeout: visibility,
				})
				if err != nil {
					return err
				}
				if printEnv {
					fmt.Printf("export KEYMIGRATE_QUEUE_URL=%q\nexport KEYMIGRATE_DLQ_URL=%q\n", mainURL, dlqURL)
					return nil
				}
				if len(applied) > 0 {
					fmt.Printf("ledger: applied migrations %v\n", applied)
				} else {
					fmt.Println("ledger: schema up to date")
				}
				fmt.Printf("bucket: %s\nqueue:  %s\ndlq:    %s (after %d receives)\n", deps.Objects.Bucket(), mainURL, dlqURL, maxReceive)
				if capsErr != nil {
					fmt.Printf("s3:     could not probe which conditions the server enforces (%v); workers will read before they copy or delete\n", capsErr)
				} else {
					fmt.Printf("s3:     conditional copies %s, conditional deletes %s, conditional batch deletes %s\n", yesNo(caps.ConditionalCopy), yesNo(caps.ConditionalDelete), yesNo(caps.ConditionalBatchDelete))
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	b := config.NewBinder(f)
	b.String(&queueName, "queue-name", "KEYMIGRATE_QUEUE_NAME", "keymigrate", "name of the main queue")
	b.String(&dlqName, "dlq-name", "KEYMIGRATE_DLQ_NAME", "keymigrate-dlq", "name of the dead-letter queue")
	b.Int(&maxReceive, "max-receive-count", "KEYMIGRATE_MAX_RECEIVE_COUNT", queue.DefaultMaxReceiveCount, "deliveries before the queue moves a message to the DLQ (only real failures and crashes spend them: a worker hands back what it stops, pauses or cannot do in an outage as fresh messages; see docs/guarantees.md, \"An outage is not a reason to dead-letter\")")
	b.Duration(&visibility, "queue-visibility-timeout", "KEYMIGRATE_QUEUE_VISIBILITY_TIMEOUT", 60*time.Second, "the main queue's default visibility timeout")
	f.BoolVar(&createBucket, "create-bucket", false, "create the bucket if it does not exist (local stacks)")
	f.BoolVar(&devPhotosTable, "dev-photos-table", false, "create the development photos table if missing (never on a real database)")
	f.BoolVar(&printEnv, "print-env", false, "print the queue URLs as shell exports")
	return cmd
}
