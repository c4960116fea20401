package inventory

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Location is where an inventory report is, as the operator gave it: an S3
// location or a local directory.
type Location struct {
	// Value is the text as given.
	Value string
	// Bucket and Key are set for s3://bucket/key: Key is a manifest.json, a
	// report's dated directory or a configuration's directory (the newest
	// report in it is read).
	Bucket, Key string
	// ManifestPath is set for a local location: the manifest.json it
	// designates, already found.
	ManifestPath string
}

// LocationError is a location the package cannot use. Its message gives the
// value, what is expected and why it is refused; a command prefixes it with
// the flag it took the value from.
type LocationError struct {
	Value  string
	Reason string
	Err    error // the underlying error, if any
}

// Error gives the value, what is expected and why it is refused.
func (e *LocationError) Error() string {
	msg := fmt.Sprintf("inventory location %q: want s3://bucket/path/manifest.json or a local directory containing manifest.json", e.Value)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error (fs.ErrNotExist for a missing report).
func (e *LocationError) Unwrap() error { return e.Err }

// bucketName is lenient on purpose (old us-east-1 buckets may have capitals
// and underscores): it refuses only what cannot be a bucket.
var bucketName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$`)

// Parse turns a location as the operator gave it into a Location. An S3 location is
// only checked for form (reading it needs a client: Location.Open); a local
// one must exist and hold a manifest.json (itself, directly inside it, or in
// its newest YYYY-MM-DDTHH-MMZ directory), so that a typo fails at once.
func Parse(value string) (Location, error) {
	l := Location{Value: value}
	bad := func(reason string, err error) (Location, error) {
		return Location{}, &LocationError{Value: value, Reason: reason, Err: err}
	}
	switch {
	case strings.TrimSpace(value) == "":
		return bad("empty", nil)
	case strings.HasPrefix(value, "s3://"):
		rest := strings.TrimPrefix(value, "s3://")
		bucket, key, _ := strings.Cut(rest, "/")
		if !bucketName.MatchString(bucket) {
			return bad(fmt.Sprintf("%q is not a bucket name", bucket), nil)
		}
		if key == "" {
			return bad("no path after the bucket; give the manifest.json, or its report or configuration directory", nil)
		}
		l.Bucket, l.Key = bucket, key
		return l, nil
	case strings.Contains(value, "://"):
		scheme, _, _ := strings.Cut(value, "://")
		return bad(fmt.Sprintf("scheme %q is not s3:// (lower case) and this is not a local path", scheme), nil)
	}
	st, err := os.Stat(value)
	if err != nil {
		return bad("", err)
	}
	if !st.IsDir() {
		if filepath.Base(value) != "manifest.json" {
			return bad("a file that is not a manifest.json", nil)
		}
		l.ManifestPath = value
		return l, nil
	}
	key, err := FindManifest(context.Background(), NewDir(value), "")
	if err != nil {
		return bad("", err)
	}
	l.ManifestPath = filepath.Join(value, filepath.FromSlash(key))
	return l, nil
}

// IsS3 reports whether the location is in a bucket.
func (l Location) IsS3() bool { return l.Bucket != "" }

// String returns the location as given.
func (l Location) String() string { return l.Value }

// Open opens the report. client reads an S3 location (it may be nil for a
// local one); the data files are read from the bucket of the location, which
// is normally the manifest's destinationBucket (a report copied elsewhere
// is read where it is).
func (l Location) Open(ctx context.Context, client S3API, opts Options) (*Reader, error) {
	// What is missing is a wrong location; anything else (a checksum, a
	// format) is the report's problem and says so itself.
	wrap := func(err error) error {
		var le *LocationError
		if errors.As(err, &le) || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return &LocationError{Value: l.Value, Err: err}
	}
	if !l.IsS3() {
		if l.ManifestPath == "" {
			return nil, &LocationError{Value: l.Value, Reason: "not parsed (use inventory.Parse)"}
		}
		r, err := OpenLocal(ctx, l.ManifestPath, opts)
		return r, wrap(err)
	}
	if client == nil {
		return nil, &LocationError{Value: l.Value, Reason: "an S3 location needs an S3 client"}
	}
	src := NewS3Bucket(client, l.Bucket)
	key, err := FindManifest(ctx, src, l.Key)
	if err != nil {
		return nil, wrap(err)
	}
	r, err := Open(ctx, src, key, opts)
	return r, wrap(err)
}
