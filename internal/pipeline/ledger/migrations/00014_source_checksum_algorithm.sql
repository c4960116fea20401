-- +goose Up
-- The checksum algorithm the moved source carried (its full-object one), so
-- that a rollback copying a legacy object back from its new copy after
-- cleanup deleted it asks for that algorithm and gives the legacy key back
-- the object it held (F13 in docs/soak-findings.md). checksum_algorithm is
-- the copy's, which differs where the copy could not carry the source's: a
-- multipart copy carries the server's default (CRC64NVME), not a source's
-- CRC32C.
-- Written only where it differs from checksum_algorithm: NULL means "the
-- same" (the usual single-part copy, which asks for its source's own
-- algorithm, costs no byte), '' means the source carried no full-object
-- checksum. Rows written before this migration read as NULL: the copy's
-- algorithm, what a rollback asked for until then. Nullable, no default:
-- adding it rewrites no row.
ALTER TABLE keymigrate.object_moves ADD COLUMN source_checksum_algorithm text;

-- +goose Down
ALTER TABLE keymigrate.object_moves DROP COLUMN source_checksum_algorithm;
