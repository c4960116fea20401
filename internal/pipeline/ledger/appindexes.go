package ledger

// ApplicationIndexes are the indexes on the application's photos table that
// keymigrate's statements need at scale and that only the application team
// can add: keymigrate never alters photos beyond its key columns and status.
// Built CONCURRENTLY, they do not lock the table. docs/guarantees.md lists
// them verbatim (a test checks), and the plan test checks every statement
// with exactly these in place.
var ApplicationIndexes = []string{
	// Archived photos assigned to an owner, and staged runs by owner
	// (`producer --owner`), look photos up by owner; the application
	// almost certainly has this one already.
	`CREATE INDEX CONCURRENTLY IF NOT EXISTS photos_owner_id ON photos (owner_id)`,
	// Cleanup finds every row that references or derives a legacy job's
	// objects, by the job named in each key column.
	`CREATE INDEX CONCURRENTLY IF NOT EXISTS photos_original_job ON photos ((substring(original_key FROM '^uploaded/([A-Za-z0-9-]+)\.[^./]+$')))`,
	`CREATE INDEX CONCURRENTLY IF NOT EXISTS photos_processed_job ON photos ((substring(processed_key FROM '^restored/([A-Za-z0-9-]+)/')))`,
	`CREATE INDEX CONCURRENTLY IF NOT EXISTS photos_thumbnail_job ON photos ((substring(thumbnail_key FROM '^thumbnails/([A-Za-z0-9-]+)\.jpg$')))`,
}
