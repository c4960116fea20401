package ledger

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

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

// indexProbes are, for each of ApplicationIndexes, a statement that a
// missing index turns into a sequential scan of photos.
var indexProbes = []string{
	`SELECT 1 FROM photos WHERE owner_id = (SELECT owner_id FROM photos LIMIT 1)`,
	`SELECT 1 FROM photos WHERE substring(original_key FROM '^uploaded/([A-Za-z0-9-]+)\.[^./]+$') = 'probe'`,
	`SELECT 1 FROM photos WHERE substring(processed_key FROM '^restored/([A-Za-z0-9-]+)/') = 'probe'`,
	`SELECT 1 FROM photos WHERE substring(thumbnail_key FROM '^thumbnails/([A-Za-z0-9-]+)\.jpg$') = 'probe'`,
}

// PhotoMissingIndexes returns those of ApplicationIndexes whose lookup the
// photos table cannot answer with an index (under any name: the application
// may have built an equivalent), and the table's estimated rows. Each is
// found by planning its lookup with sequential scans discouraged: only a
// missing index leaves one in the plan, whatever the table's size.
func (s *Store) PhotoMissingIndexes(ctx context.Context) (missing []string, rows int64, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		missing = missing[:0]
		if err := tx.QueryRow(ctx, `SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'photos'::regclass`).Scan(&rows); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		for i, probe := range indexProbes {
			var plan string
			if err := tx.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+probe).Scan(&plan); err != nil {
				return err
			}
			if seqScanOfPhotos(plan) {
				missing = append(missing, ApplicationIndexes[i])
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("check the indexes on photos: %w", err)
	}
	return missing, rows, nil
}

// seqScanOfPhotos reports whether a JSON plan reads photos sequentially
// outside its sub-plans (the owner probe's LIMIT 1 sub-select reads a row of
// it by design).
func seqScanOfPhotos(plan string) bool {
	var root []struct {
		Plan planNode `json:"Plan"`
	}
	if json.Unmarshal([]byte(plan), &root) != nil {
		return true
	}
	var walk func(n planNode) bool
	walk = func(n planNode) bool {
		if n.ParentRelationship == "InitPlan" || n.ParentRelationship == "SubPlan" {
			return false
		}
		if n.NodeType == "Seq Scan" && n.RelationName == "photos" {
			return true
		}
		for _, k := range n.Plans {
			if walk(k) {
				return true
			}
		}
		return false
	}
	for _, r := range root {
		if walk(r.Plan) {
			return true
		}
	}
	return false
}

type planNode struct {
	NodeType           string     `json:"Node Type"`
	RelationName       string     `json:"Relation Name"`
	ParentRelationship string     `json:"Parent Relationship"`
	Plans              []planNode `json:"Plans"`
}
