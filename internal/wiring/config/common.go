package config

import (
	"github.com/spf13/pflag"
)

// Common holds the settings every binary shares: where the data is.
type Common struct {
	DatabaseURL string
	Bucket      string
	QueueURL    string
	DLQURL      string
	Region      string
	PathStyle   bool
	LogFormat   string
	LogLevel    string
}

// Bind registers the common flags. The AWS endpoints are not flags: the SDK reads
// AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_SQS itself, and credentials come from
// the default chain (environment, shared files, SSO, web identity, instance role).
func (c *Common) Bind(b *Binder) {
	b.String(&c.DatabaseURL, "database-url", EnvDatabaseURL, "", "Postgres connection string of the database holding the photos table and the ledger")
	b.String(&c.Bucket, "bucket", EnvBucket, "", "S3 bucket holding the photos")
	b.String(&c.QueueURL, "queue-url", EnvQueueURL, "", "URL of the main SQS queue")
	b.String(&c.DLQURL, "dlq-url", EnvDLQURL, "", "URL of the dead-letter SQS queue")
	b.String(&c.Region, "region", EnvRegion, "", "AWS region; by default the SDK's (AWS_REGION, AWS_DEFAULT_REGION, the profile's region); required when none is configured")
	b.Bool(&c.PathStyle, "s3-path-style", EnvPathStyle, false, "address S3 buckets by path (needed by most local S3 servers); on by default when AWS_ENDPOINT_URL_S3 is set")
	b.String(&c.LogFormat, "log-format", EnvLogFormat, "auto", "log format: json, console, or auto (console on a terminal, JSON otherwise)")
	b.String(&c.LogLevel, "log-level", EnvLogLevel, "info", "log level: debug, info, warn, error")
}

// Need lists which of the common settings a command requires.
type Need struct{ DB, Bucket, Queue, DLQ bool }

// Check reports the missing required settings.
func (c *Common) Check(n Need) error {
	var s []Setting
	if n.DB {
		s = append(s, Setting{c.DatabaseURL, "database-url", EnvDatabaseURL, "the Postgres database with the photos table"})
	}
	if n.Bucket {
		s = append(s, Setting{c.Bucket, "bucket", EnvBucket, "the S3 bucket holding the photos"})
	}
	if n.Queue {
		s = append(s, Setting{c.QueueURL, "queue-url", EnvQueueURL, "the main SQS queue (migratectl setup prints it)"})
	}
	if n.DLQ {
		s = append(s, Setting{c.DLQURL, "dlq-url", EnvDLQURL, "the dead-letter SQS queue (migratectl setup prints it)"})
	}
	return Required(s...)
}

// Flags is a convenience for tests and mains: a fresh flag set with the common
// flags bound.
func Flags(name string) (*pflag.FlagSet, *Common, *Binder) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	b := NewBinder(fs)
	c := &Common{}
	c.Bind(b)
	return fs, c, b
}
