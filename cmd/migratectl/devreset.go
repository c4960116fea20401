package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
	"github.com/keymigrate/keymigrate/internal/wiring/awsconf"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) devResetCmd() *cobra.Command {
	var queueName, dlqName string
	var yes bool
	cmd := &cobra.Command{
		Use:    "dev-reset",
		Short:  "Delete every object in the bucket and the named queues (local stacks only)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !yes {
				return errors.New("dev-reset deletes every object in the bucket and both queues: add --yes if that is what you want")
			}
			for _, v := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS"} {
				u, err := url.Parse(os.Getenv(v))
				if err != nil || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") {
					return fmt.Errorf("dev-reset only runs against a local stack: %s must point at 127.0.0.1 or localhost", v)
				}
			}
			return a.run(connect.Options{Need: config.Need{Bucket: true}}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				var keys []string
				flush := func() error {
					failed, err := deps.Objects.DeleteBatch(ctx, keys)
					if err != nil {
						return err
					}
					if len(failed) > 0 {
						return fmt.Errorf("%d objects not deleted: %v", len(failed), failed)
					}
					keys = keys[:0]
					return nil
				}
				if err := deps.Objects.ListEach(ctx, "", func(k string, _ int64, _ string) error {
					keys = append(keys, k)
					if len(keys) == 1000 {
						return flush()
					}
					return nil
				}); err != nil {
					return err
				}
				if err := flush(); err != nil {
					return err
				}
				client := awsconf.SQS(deps.AWS)
				for _, n := range []string{queueName, dlqName} {
					if err := queue.DeleteByName(ctx, client, n); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&queueName, "queue-name", "keymigrate", "main queue to delete")
	cmd.Flags().StringVar(&dlqName, "dlq-name", "keymigrate-dlq", "dead-letter queue to delete")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm")
	return cmd
}
