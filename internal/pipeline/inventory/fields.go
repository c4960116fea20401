package inventory

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Object is one inventory record. A field the report does not have, or that
// this record leaves empty (a delete marker's Size, say), is left at its zero
// value and is missing from Present: a Size of 0 with FieldSize in Present is
// an empty object, without it an unknown size.
type Object struct {
	Bucket                       string
	Key                          string // always decoded (never URL-encoded)
	VersionID                    string
	IsLatest                     bool
	IsDeleteMarker               bool
	Size                         int64
	LastModified                 time.Time // UTC
	ETag                         string    // without surrounding double quotes
	StorageClass                 string
	IsMultipartUploaded          bool
	ReplicationStatus            string
	EncryptionStatus             string // SSE-S3, SSE-C, SSE-KMS, NOT-SSE (AWS's documented values)
	ObjectLockRetainUntilDate    time.Time
	ObjectLockMode               string
	ObjectLockLegalHoldStatus    string
	IntelligentTieringAccessTier string
	BucketKeyStatus              string
	ChecksumAlgorithm            string
	ObjectAccessControlList      string // as delivered: base64 of JSON in CSV reports (observed), JSON in Parquet
	ObjectOwner                  string

	// Present holds the fields that carry a value in this record.
	Present FieldSet
}

// FieldSet is a set of inventory fields (columns). The reader reports the
// report's columns as one (Reader.Fields) and each record's non-empty values
// as another (Object.Present); the writer takes the optional fields to write
// as one (Config.Fields).
type FieldSet uint32

// The fields AWS documents, in the canonical column order of its fileSchema
// examples (storage-inventory-location.html). Bucket and Key are in every
// report; VersionId, IsLatest and IsDeleteMarker only in reports of all
// versions; the rest are the configuration's optional fields.
const (
	FieldBucket FieldSet = 1 << iota
	FieldKey
	FieldVersionID
	FieldIsLatest
	FieldIsDeleteMarker
	FieldSize
	FieldLastModifiedDate
	FieldETag
	FieldStorageClass
	FieldIsMultipartUploaded
	FieldReplicationStatus
	FieldEncryptionStatus
	FieldObjectLockRetainUntilDate
	FieldObjectLockMode
	FieldObjectLockLegalHoldStatus
	FieldIntelligentTieringAccessTier
	FieldBucketKeyStatus
	FieldChecksumAlgorithm
	FieldObjectAccessControlList
	FieldObjectOwner
)

// Has reports whether every field of f is in s.
func (s FieldSet) Has(f FieldSet) bool { return s&f == f }

// String lists the fields by their CSV names, in AWS's column order.
func (s FieldSet) String() string {
	var names []string
	for _, f := range fields {
		if s.Has(f.bit) {
			names = append(names, f.csv)
		}
	}
	return strings.Join(names, ", ")
}

// ParseFields turns AWS's optional field names (the CSV names, as in an
// inventory configuration's OptionalFields: "Size", "ETag", ...) into a set.
// Names are matched without regard to case.
func ParseFields(names ...string) (FieldSet, error) {
	var s FieldSet
	for _, n := range names {
		f := lookupCSVField(n)
		if f == nil {
			return 0, fmt.Errorf("inventory: unknown field %q", n)
		}
		s |= f.bit
	}
	return s, nil
}

type kind uint8

const (
	kString kind = iota
	kInt64
	kBool
	kTime // ISO 8601 in CSV, int64 TIMESTAMP_MILLIS in Parquet
)

// field describes one inventory column: its CSV fileSchema name, its Parquet
// column name, its type and where it lives in Object.
type field struct {
	bit      FieldSet
	csv      string
	pq       string
	kind     kind
	required bool // only bucket and key are "required" in the Parquet schema
	str      func(*Object) *string
	i64      func(*Object) *int64
	bln      func(*Object) *bool
	tim      func(*Object) *time.Time
}

// fields lists every documented column in AWS's canonical order.
var fields = []*field{
	{bit: FieldBucket, csv: "Bucket", pq: "bucket", kind: kString, required: true, str: func(o *Object) *string { return &o.Bucket }},
	{bit: FieldKey, csv: "Key", pq: "key", kind: kString, required: true, str: func(o *Object) *string { return &o.Key }},
	{bit: FieldVersionID, csv: "VersionId", pq: "version_id", kind: kString, str: func(o *Object) *string { return &o.VersionID }},
	{bit: FieldIsLatest, csv: "IsLatest", pq: "is_latest", kind: kBool, bln: func(o *Object) *bool { return &o.IsLatest }},
	{bit: FieldIsDeleteMarker, csv: "IsDeleteMarker", pq: "is_delete_marker", kind: kBool, bln: func(o *Object) *bool { return &o.IsDeleteMarker }},
	{bit: FieldSize, csv: "Size", pq: "size", kind: kInt64, i64: func(o *Object) *int64 { return &o.Size }},
	{bit: FieldLastModifiedDate, csv: "LastModifiedDate", pq: "last_modified_date", kind: kTime, tim: func(o *Object) *time.Time { return &o.LastModified }},
	{bit: FieldETag, csv: "ETag", pq: "e_tag", kind: kString, str: func(o *Object) *string { return &o.ETag }},
	{bit: FieldStorageClass, csv: "StorageClass", pq: "storage_class", kind: kString, str: func(o *Object) *string { return &o.StorageClass }},
	{bit: FieldIsMultipartUploaded, csv: "IsMultipartUploaded", pq: "is_multipart_uploaded", kind: kBool, bln: func(o *Object) *bool { return &o.IsMultipartUploaded }},
	{bit: FieldReplicationStatus, csv: "ReplicationStatus", pq: "replication_status", kind: kString, str: func(o *Object) *string { return &o.ReplicationStatus }},
	{bit: FieldEncryptionStatus, csv: "EncryptionStatus", pq: "encryption_status", kind: kString, str: func(o *Object) *string { return &o.EncryptionStatus }},
	{bit: FieldObjectLockRetainUntilDate, csv: "ObjectLockRetainUntilDate", pq: "object_lock_retain_until_date", kind: kTime, tim: func(o *Object) *time.Time { return &o.ObjectLockRetainUntilDate }},
	{bit: FieldObjectLockMode, csv: "ObjectLockMode", pq: "object_lock_mode", kind: kString, str: func(o *Object) *string { return &o.ObjectLockMode }},
	{bit: FieldObjectLockLegalHoldStatus, csv: "ObjectLockLegalHoldStatus", pq: "object_lock_legal_hold_status", kind: kString, str: func(o *Object) *string { return &o.ObjectLockLegalHoldStatus }},
	{bit: FieldIntelligentTieringAccessTier, csv: "IntelligentTieringAccessTier", pq: "intelligent_tiering_access_tier", kind: kString, str: func(o *Object) *string { return &o.IntelligentTieringAccessTier }},
	{bit: FieldBucketKeyStatus, csv: "BucketKeyStatus", pq: "bucket_key_status", kind: kString, str: func(o *Object) *string { return &o.BucketKeyStatus }},
	{bit: FieldChecksumAlgorithm, csv: "ChecksumAlgorithm", pq: "checksum_algorithm", kind: kString, str: func(o *Object) *string { return &o.ChecksumAlgorithm }},
	{bit: FieldObjectAccessControlList, csv: "ObjectAccessControlList", pq: "object_access_control_list", kind: kString, str: func(o *Object) *string { return &o.ObjectAccessControlList }},
	{bit: FieldObjectOwner, csv: "ObjectOwner", pq: "object_owner", kind: kString, str: func(o *Object) *string { return &o.ObjectOwner }},
}

// versionFields are the columns IncludedObjectVersions=All adds.
const versionFields = FieldVersionID | FieldIsLatest | FieldIsDeleteMarker

var (
	fieldByCSV     = map[string]*field{}
	fieldByParquet = map[string]*field{}
)

func init() {
	for _, f := range fields {
		fieldByCSV[strings.ToLower(f.csv)] = f
		fieldByParquet[f.pq] = f
	}
}

func lookupCSVField(name string) *field { return fieldByCSV[strings.ToLower(strings.TrimSpace(name))] }

// selectFields returns the fields of set s plus Bucket and Key, in AWS's
// canonical order.
func selectFields(s FieldSet) []*field {
	s |= FieldBucket | FieldKey
	var out []*field
	for _, f := range fields {
		if s.Has(f.bit) {
			out = append(out, f)
		}
	}
	return out
}

// csvFileSchema renders the manifest fileSchema for CSV: the field names
// joined by ", " (as in AWS's example manifest).
func csvFileSchema(fs []*field) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.csv
	}
	return strings.Join(names, ", ")
}

// parquetFileSchema renders the manifest fileSchema for Parquet in the form of
// AWS's current example:
//
//	message s3.inventory { required binary bucket (UTF8); ... optional binary object_owner (UTF8);}
func parquetFileSchema(fs []*field) string {
	var b strings.Builder
	b.WriteString("message s3.inventory {")
	for _, f := range fs {
		rep := "optional"
		if f.required {
			rep = "required"
		}
		switch f.kind {
		case kString:
			fmt.Fprintf(&b, " %s binary %s (UTF8);", rep, f.pq)
		case kInt64:
			fmt.Fprintf(&b, " %s int64 %s;", rep, f.pq)
		case kBool:
			fmt.Fprintf(&b, " %s boolean %s;", rep, f.pq)
		case kTime:
			fmt.Fprintf(&b, " %s int64 %s (TIMESTAMP_MILLIS);", rep, f.pq)
		}
	}
	b.WriteString("}")
	return b.String()
}

// EncodeKey URL-encodes an object key the way S3 Inventory writes the Key
// column of CSV reports ("the key name is URL-encoded and must be decoded
// before you can use it"). AWS does not specify the exact character set; this
// follows what S3 returns for ListObjectsV2 with encoding-type=url: space
// becomes '+', '/' and ASCII letters, digits and "-_.*" stay as they are,
// every other byte of the UTF-8 encoding becomes %XX (upper-case hex).
// DecodeKey reverses it, and any other encoding of the same key.
func EncodeKey(key string) string {
	var b strings.Builder
	b.Grow(len(key) + 8)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '*', c == '/':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// DecodeKey decodes the Key column of a CSV report: form encoding, where '+'
// is a space (observed: cloud-custodian/cloud-custodian#1997) and %XX a byte.
// A malformed escape is an error, never passed through: a key read wrong is a
// key the migration would look for in the wrong place.
func DecodeKey(s string) (string, error) {
	k, err := url.QueryUnescape(s)
	if err != nil {
		return "", fmt.Errorf("key %q is not URL-encoded: %w", s, err)
	}
	return k, nil
}
