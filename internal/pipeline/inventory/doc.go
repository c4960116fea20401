// Package inventory reads and writes Amazon S3 Inventory reports
// (manifest.json, manifest.checksum and data files) in the layout and formats
// AWS documents, so that the operator commands can take the state of billions
// of objects from a report instead of from listings and HEAD requests:
//
//   - https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory.html
//   - https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory-location.html
//
// CSV data files are gzip-compressed, have no header row, quote every value,
// and carry the object key URL-encoded. Parquet data files are Snappy
// compressed, use the schema "message s3.inventory { ... }" with lower-case,
// underscore column names, and carry the key as plain UTF-8. ORC is refused.
//
// Parse turns the location an operator gave into a Location; its Open
// gives a Reader. Reader.Objects streams every record; Reader.Files and
// Reader.ReadFile let callers read data files in parallel or across shards.
// No record of a data file is returned before the whole file matched the
// size and MD5 the manifest gives it, and the manifest must match
// manifest.checksum. docs/inventory.md lists which format facts are
// documented by AWS and which are only observed.
package inventory
