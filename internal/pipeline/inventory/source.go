package inventory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Source is read access to the bucket that holds an inventory report (or to
// a local directory standing for it). Keys are slash-separated and relative
// to the bucket's root, as the manifest gives them.
type Source interface {
	// Open returns the content of the object at key. A missing object is an
	// error that wraps fs.ErrNotExist.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// SubDirs returns the names (without slashes) of the immediate
	// "directories" under prefix, which is empty or ends with "/". It is how
	// the newest dated report of a configuration is found.
	SubDirs(ctx context.Context, prefix string) ([]string, error)
	// String names the source in messages (s3://bucket, or a local path).
	String() string
}

// Sink is write access to the bucket (or local directory) a Writer writes a
// report to.
type Sink interface {
	// Put stores size bytes read from body at key, replacing what is there.
	Put(ctx context.Context, key string, body io.ReadSeeker, size int64) error
	// String names the sink in messages.
	String() string
}

// Dir is a local directory that stands for the root of a destination
// bucket: the object "a/b/c" is the file <root>/a/b/c. It is a Source and a
// Sink.
type Dir struct{ root string }

// NewDir returns the Dir rooted at root.
func NewDir(root string) *Dir { return &Dir{root: root} }

// String returns the directory's path.
func (d *Dir) String() string { return d.root }

// path maps a key to a file below the root, refusing keys that would leave
// it (a manifest listing "../../etc/passwd" is not an inventory).
func (d *Dir) path(key string) (string, error) {
	p := filepath.FromSlash(key)
	if key != "" && !filepath.IsLocal(p) {
		return "", fmt.Errorf("%w: key %q is not below %s", ErrFormat, key, d.root)
	}
	return filepath.Join(d.root, p), nil
}

// Open opens the file for key. The *os.File it returns lets the reader
// verify and parse a local data file in place, without a copy.
func (d *Dir) Open(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err // *fs.PathError: wraps fs.ErrNotExist when missing
	}
	return f, nil
}

// SubDirs lists the directories in the directory for prefix.
func (d *Dir) SubDirs(_ context.Context, prefix string) ([]string, error) {
	p, err := d.path(strings.TrimSuffix(prefix, "/"))
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Put writes the file for key through a temporary file and a rename, so that
// a reader never sees half a file.
func (d *Dir) Put(_ context.Context, key string, body io.ReadSeeker, size int64) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	n, err := io.Copy(tmp, body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("wrote %d bytes, want %d", n, size)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	return nil
}

// reportDir matches the name of a report's directory: the time the scan
// started, YYYY-MM-DDTHH-MMZ (storage-inventory-location.html). Such names
// sort chronologically.
var reportDir = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$`)

// FindManifest returns the key of the manifest.json that prefix designates:
// prefix itself if it names a manifest.json, the manifest.json directly
// under prefix (a report's dated directory), or else the one in the newest
// YYYY-MM-DDTHH-MMZ directory under prefix (a configuration's directory).
// An empty prefix is the root of src.
func FindManifest(ctx context.Context, src Source, prefix string) (string, error) {
	if prefix == "manifest.json" || strings.HasSuffix(prefix, "/manifest.json") {
		return prefix, nil
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	found, err := exists(ctx, src, prefix+"manifest.json")
	if err != nil || found {
		return prefix + "manifest.json", err
	}
	dirs, err := src.SubDirs(ctx, prefix)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("list %s/%s: %w", src, prefix, err)
	}
	slices.Sort(dirs)
	for _, d := range slices.Backward(dirs) {
		if !reportDir.MatchString(d) {
			continue
		}
		key := prefix + d + "/manifest.json"
		found, err := exists(ctx, src, key)
		if err != nil {
			return "", err
		}
		if found {
			return key, nil
		}
	}
	return "", fmt.Errorf("no manifest.json in %s/%s nor in a YYYY-MM-DDTHH-MMZ directory below it: %w", src, prefix, fs.ErrNotExist)
}

func exists(ctx context.Context, src Source, key string) (bool, error) {
	rc, err := src.Open(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s/%s: %w", src, key, err)
	}
	_ = rc.Close()
	return true, nil
}

// bucketRoot finds the directory that stands for the destination bucket's
// root of a local copy of a report: data file keys are relative to the
// bucket's root, which is some ancestor of the manifest's directory (the
// manifest's own key is not in the manifest). It is the nearest ancestor
// under which the first data file exists.
func bucketRoot(manifestPath string, m *Manifest) (root, manifestKey string, err error) {
	root = filepath.Dir(manifestPath)
	if len(m.Files) > 0 {
		first := filepath.FromSlash(m.Files[0].Key)
		for d := root; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, first)); err == nil {
				root = d
				break
			}
			if filepath.Dir(d) == d {
				return "", "", fmt.Errorf("data file %q not found under any parent directory of %s: %w", m.Files[0].Key, manifestPath, fs.ErrNotExist)
			}
		}
	}
	rel, err := filepath.Rel(root, manifestPath)
	if err != nil {
		return "", "", err
	}
	return root, filepath.ToSlash(rel), nil
}

// checksumKey returns the key of the manifest.checksum beside a
// manifest.json.
func checksumKey(manifestKey string) string {
	return path.Join(path.Dir(manifestKey), "manifest.checksum")
}
