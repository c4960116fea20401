package inventory

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Format is the value of manifest.json's fileFormat.
type Format string

// The formats AWS documents. ORC is recognised so that it can be refused
// with a useful message.
const (
	FormatCSV     Format = "CSV"
	FormatORC     Format = "ORC"
	FormatParquet Format = "Parquet"
)

// ManifestVersion is the only manifest "version" AWS documents. A manifest of
// another version is refused rather than read by guesswork: cleanup deletes
// on what an inventory says.
const ManifestVersion = "2016-11-30"

// Manifest is the content of manifest.json, field for field as documented in
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory-location.html
// (JSON key order here is the order of AWS's examples).
type Manifest struct {
	SourceBucket      string `json:"sourceBucket"`
	DestinationBucket string `json:"destinationBucket"` // an ARN: arn:aws:s3:::bucket
	Version           string `json:"version"`           // "2016-11-30"
	CreationTimestamp string `json:"creationTimestamp"` // ms since the epoch, as a string
	FileFormat        Format `json:"fileFormat"`        // "CSV" | "ORC" | "Parquet"
	FileSchema        string `json:"fileSchema"`
	Files             []File `json:"files"`
}

// File is one entry of manifest.json's "files": one data file of the report.
type File struct {
	Key         string `json:"key"`  // key in the destination bucket
	Size        int64  `json:"size"` // bytes of the (compressed) data file
	MD5Checksum string `json:"MD5checksum"`
}

// Created parses CreationTimestamp: when AWS started the scan the report
// describes. Objects written after it may be missing from the report.
func (m *Manifest) Created() (time.Time, error) {
	ms, err := strconv.ParseInt(m.CreationTimestamp, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("inventory: creationTimestamp %q: %w", m.CreationTimestamp, err)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// DestinationBucketName returns the bucket name from the destinationBucket ARN.
func (m *Manifest) DestinationBucketName() string {
	return strings.TrimPrefix(m.DestinationBucket, "arn:aws:s3:::")
}

// ErrChecksum reports that manifest.json does not match manifest.checksum, or
// a data file does not match the size or MD5checksum the manifest gives it:
// the file is corrupt, truncated or was changed, and none of its records is
// returned.
var ErrChecksum = errors.New("inventory: checksum mismatch")

// ErrFormat reports a report this package refuses to read: a format,
// version or schema it does not know, or a data file that does not follow
// the schema the manifest announces.
var ErrFormat = errors.New("inventory: unsupported or malformed report")

// ParseManifest decodes manifest.json. If checksum is non-nil it must be the
// content of manifest.checksum: the hex MD5 of the manifest.json bytes
// (surrounding white space is ignored, since whether AWS ends it with a
// newline is not documented).
func ParseManifest(data, checksum []byte) (*Manifest, error) {
	if checksum != nil {
		sum := md5.Sum(data)
		want := strings.ToLower(string(bytes.TrimSpace(checksum)))
		if hex.EncodeToString(sum[:]) != want {
			return nil, fmt.Errorf("%w: manifest.json has MD5 %x, manifest.checksum says %q", ErrChecksum, sum, want)
		}
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %w", ErrFormat, err)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("%w: manifest version %q; this reader knows %q", ErrFormat, m.Version, ManifestVersion)
	}
	switch {
	case strings.EqualFold(string(m.FileFormat), string(FormatCSV)):
		m.FileFormat = FormatCSV
	case strings.EqualFold(string(m.FileFormat), string(FormatParquet)):
		m.FileFormat = FormatParquet
	case strings.EqualFold(string(m.FileFormat), string(FormatORC)):
		return nil, fmt.Errorf("%w: ORC inventories are not supported; configure the inventory as CSV or Parquet", ErrFormat)
	default:
		return nil, fmt.Errorf("%w: unknown fileFormat %q", ErrFormat, m.FileFormat)
	}
	if m.SourceBucket == "" {
		return nil, fmt.Errorf("%w: manifest has no sourceBucket", ErrFormat)
	}
	seen := make(map[string]bool, len(m.Files))
	for i, f := range m.Files {
		switch {
		case f.Key == "":
			return nil, fmt.Errorf("%w: manifest file %d has no key", ErrFormat, i)
		case seen[f.Key]:
			// Read twice, every record would be counted twice.
			return nil, fmt.Errorf("%w: manifest lists data file %q twice", ErrFormat, f.Key)
		case f.Size < 0:
			return nil, fmt.Errorf("%w: manifest file %q has size %d", ErrFormat, f.Key, f.Size)
		}
		if b, err := hex.DecodeString(f.MD5Checksum); err != nil || len(b) != md5.Size {
			return nil, fmt.Errorf("%w: manifest file %q has a malformed MD5checksum %q", ErrFormat, f.Key, f.MD5Checksum)
		}
		seen[f.Key] = true
	}
	return &m, nil
}

// marshalManifest renders manifest.json (indented like AWS's examples).
func marshalManifest(m *Manifest) ([]byte, error) {
	return json.MarshalIndent(m, "", "    ")
}
