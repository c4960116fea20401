// Package config binds command-line flags to environment variables, so that every
// setting can come from a flag (for people) or from the environment (for
// containers and CI), and --help says which variable backs which flag.
//
// A flag given on the command line wins over its variable; the variable wins over
// the built-in default.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// The environment variables shared by the binaries.
const (
	EnvDatabaseURL = "DATABASE_URL"
	EnvBucket      = "KEYMIGRATE_BUCKET"
	EnvQueueURL    = "KEYMIGRATE_QUEUE_URL"
	EnvDLQURL      = "KEYMIGRATE_DLQ_URL"
	EnvRegion      = "AWS_REGION"
	EnvPathStyle   = "KEYMIGRATE_S3_PATH_STYLE"
	EnvLogFormat   = "KEYMIGRATE_LOG_FORMAT"
	EnvLogLevel    = "KEYMIGRATE_LOG_LEVEL"
)

// Binder registers flags whose defaults come from environment variables. A
// variable that cannot be parsed is remembered and reported by Err, so that a
// typo in a deployment manifest fails loudly instead of silently using a default.
type Binder struct {
	fs   *pflag.FlagSet
	errs []error
}

// NewBinder binds flags on fs.
func NewBinder(fs *pflag.FlagSet) *Binder { return &Binder{fs: fs} }

// Err reports every environment variable that could not be parsed.
func (b *Binder) Err() error { return errors.Join(b.errs...) }

func (b *Binder) usage(usage, env string) string {
	if env == "" {
		return usage
	}
	return usage + " (env " + env + ")"
}

func (b *Binder) lookup(env string) (string, bool) {
	if env == "" {
		return "", false
	}
	v, ok := os.LookupEnv(env)
	return v, ok && v != ""
}

func (b *Binder) fail(env, v, want string, err error) {
	b.errs = append(b.errs, fmt.Errorf("environment variable %s=%q: want %s: %v", env, v, want, err))
}

// String binds a string flag.
func (b *Binder) String(p *string, name, env, def, usage string) {
	if v, ok := b.lookup(env); ok {
		def = v
	}
	b.fs.StringVar(p, name, def, b.usage(usage, env))
}

// Int binds an int flag.
func (b *Binder) Int(p *int, name, env string, def int, usage string) {
	if v, ok := b.lookup(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.fail(env, v, "an integer", err)
		} else {
			def = n
		}
	}
	b.fs.IntVar(p, name, def, b.usage(usage, env))
}

// Float binds a float64 flag.
func (b *Binder) Float(p *float64, name, env string, def float64, usage string) {
	if v, ok := b.lookup(env); ok {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.fail(env, v, "a number", err)
		} else {
			def = n
		}
	}
	b.fs.Float64Var(p, name, def, b.usage(usage, env))
}

// Bool binds a bool flag.
func (b *Binder) Bool(p *bool, name, env string, def bool, usage string) {
	if v, ok := b.lookup(env); ok {
		n, err := strconv.ParseBool(v)
		if err != nil {
			b.fail(env, v, "true or false", err)
		} else {
			def = n
		}
	}
	b.fs.BoolVar(p, name, def, b.usage(usage, env))
}

// Duration binds a duration flag ("30s", "5m").
func (b *Binder) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := b.lookup(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.fail(env, v, "a duration such as 30s or 5m", err)
		} else {
			def = d
		}
	}
	b.fs.DurationVar(p, name, def, b.usage(usage, env))
}

// Bytes binds a byte-size flag that accepts "5GiB", "64MiB", "1048576".
func (b *Binder) Bytes(p *int64, name, env string, def int64, usage string) {
	if v, ok := b.lookup(env); ok {
		n, err := ParseBytes(v)
		if err != nil {
			b.fail(env, v, "a size such as 64MiB or 5GiB", err)
		} else {
			def = n
		}
	}
	*p = def
	b.fs.Var(&bytesValue{p: p}, name, b.usage(usage, env))
}

// ParseBytes parses a size such as "64MiB", "5GiB" or "1048576".
func ParseBytes(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, err
	}
	if n > 1<<62 {
		return 0, fmt.Errorf("%s is too large", s)
	}
	return int64(n), nil
}

type bytesValue struct{ p *int64 }

func (v *bytesValue) String() string {
	if v.p == nil {
		return "0"
	}
	return humanize.IBytes(uint64(*v.p))
}
func (v *bytesValue) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return fmt.Errorf("want a size such as 64MiB or 5GiB: %w", err)
	}
	*v.p = n
	return nil
}
func (v *bytesValue) Type() string { return "size" }

// Required returns an error naming every empty setting, with its flag and
// variable, so that the operator can fix them all at once.
func Required(settings ...Setting) error {
	var errs []error
	for _, s := range settings {
		if s.Value == "" {
			msg := fmt.Sprintf("missing --%s", s.Flag)
			if s.Env != "" {
				msg += fmt.Sprintf(" (or %s)", s.Env)
			}
			errs = append(errs, fmt.Errorf("%s: %s", msg, s.What))
		}
	}
	return errors.Join(errs...)
}

// Setting describes one required setting for Required.
type Setting struct {
	Value string
	Flag  string
	Env   string
	What  string
}
