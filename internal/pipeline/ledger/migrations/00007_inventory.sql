-- +goose Up
-- An S3 Inventory report in Postgres (issue 16 §3): plan, verify and cleanup
-- join with the report instead of listing the bucket and sending a HEAD per
-- object. One report's objects are held at a time; loading a new report
-- replaces them (ledger/inventory.go says how loaders and readers stay out of
-- each other's way).

-- The reports that were loaded or are being loaded. At most one is current:
-- the one whose objects inventory_objects holds (or is being filled with).
CREATE TABLE keymigrate.inventory_reports (
    id            bigserial PRIMARY KEY,
    -- identifies the report whatever the path it is read from (an s3://
    -- location on one machine, a local copy on another): a SHA-256 of its
    -- source bucket, creationTimestamp, format and data files (key and MD5)
    fingerprint   text NOT NULL UNIQUE,
    -- where the first loader read its manifest.json
    location      text NOT NULL,
    source_bucket text NOT NULL,
    format        text NOT NULL,
    -- the manifest's creationTimestamp: when AWS started the scan
    created_at    timestamptz NOT NULL,
    files         integer NOT NULL,
    is_current    boolean NOT NULL DEFAULT false,
    began_at      timestamptz NOT NULL DEFAULT now(),
    -- set when every data file is loaded; rows is then the report's total
    loaded_at     timestamptz,
    rows          bigint
);
CREATE UNIQUE INDEX inventory_reports_one_current ON keymigrate.inventory_reports ((true)) WHERE is_current;

-- One row per data file of the current report: a loader claims the next
-- unloaded one (FOR UPDATE SKIP LOCKED), copies its records and sets
-- loaded_at in the same transaction, so a killed loader's file is redone
-- and no file is loaded twice. The files of a replaced report are deleted.
CREATE TABLE keymigrate.inventory_files (
    report_id bigint NOT NULL REFERENCES keymigrate.inventory_reports (id) ON DELETE CASCADE,
    idx       integer NOT NULL,
    key       text NOT NULL,
    size      bigint NOT NULL,
    md5       text NOT NULL,
    loaded_at timestamptz,
    rows      bigint,
    -- who loaded it (host and process), for status
    loader    text,
    PRIMARY KEY (report_id, idx)
);

-- The current report's objects: the latest version of every key (delete
-- markers and older versions are not loaded). UNLOGGED: no WAL (the table is
-- written once, not twice, and nothing is shipped to replicas), and a
-- Postgres crash (or a failover to a replica) empties it; inventory_loaded
-- below tells a loader and the readers that it happened, and the load is
-- simply run again. key is in byte order (COLLATE "C"), the order S3 lists
-- in, so a plan reads a prefix's key range from the index.
CREATE UNLOGGED TABLE keymigrate.inventory_objects (
    -- The fixed-width columns first: no alignment padding between columns
    -- (14 bytes an object less than in the report's column order, of 179:
    -- docs/inventory.md).
    size              bigint NOT NULL,
    -- NULL when the report does not carry LastModifiedDate
    last_modified     timestamptz,
    -- IsMultipartUploaded, or (a report without it) an ETag ending in -N
    is_multipart      boolean NOT NULL,
    key               text COLLATE "C" PRIMARY KEY,
    -- without the double quotes of the S3 API (the reader adds them back)
    etag              text NOT NULL,
    storage_class     text NOT NULL,
    -- NULL when the report does not carry EncryptionStatus
    encryption_status text
);

-- A sentinel in the same unlogged world as inventory_objects: one row for the
-- current report, written when it is begun. A crash empties both tables, so a
-- report whose files say loaded but whose sentinel is gone lost its objects:
-- its files are marked unloaded again and the next load refills them.
CREATE UNLOGGED TABLE keymigrate.inventory_loaded (
    report_id bigint PRIMARY KEY
);

-- +goose Down
DROP TABLE keymigrate.inventory_loaded;
DROP TABLE keymigrate.inventory_objects;
DROP TABLE keymigrate.inventory_files;
DROP TABLE keymigrate.inventory_reports;
