package soak

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Evidence writes, for each photo and key a violation names, every row the
// run's database holds about it, as JSON, table by table: the application's
// and the ledger's (keymigrate's schema: the photo's ledger row, its object
// moves and discard claims, its failures, its audit). The database is
// dropped when the test ends, and a rare violation is seldom replayed
// (timing decides it), so this is what there is to read afterwards (the
// 30-minute soak of 2026-12-08, seed 798473: a row pointing at a missing
// copy, with only the workers' logs left to explain it).
//
// Tables are found by their columns, so that a table added later is
// included: rows whose photo_id (or, in the application's photos table, id)
// is the photo's, and rows whose new_key, old_key or key is the key.
func Evidence(ctx context.Context, pool *pgxpool.Pool, w io.Writer, vs []Violation) error {
	photos, keys := map[string]bool{}, map[string]bool{}
	for _, v := range vs {
		if v.PhotoID != "" {
			photos[v.PhotoID] = true
		}
		if v.Key != "" {
			keys[v.Key] = true
		}
	}
	rows, err := pool.Query(ctx, `
SELECT table_schema, table_name, column_name
  FROM information_schema.columns
 WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
   AND (column_name IN ('photo_id', 'new_key', 'old_key', 'key')
        OR (table_name = 'photos' AND column_name = 'id'))
 ORDER BY 1, 2, 3`)
	if err != nil {
		return fmt.Errorf("evidence: list the tables: %w", err)
	}
	type col struct{ schema, table, column string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		return c, r.Scan(&c.schema, &c.table, &c.column)
	})
	if err != nil {
		return fmt.Errorf("evidence: list the tables: %w", err)
	}
	for _, group := range []struct {
		what   string
		values map[string]bool
		byKey  bool
	}{{"photo", photos, false}, {"key", keys, true}} {
		for _, v := range sortedKeys(group.values) {
			fmt.Fprintf(w, "== %s %s\n", group.what, v)
			for _, c := range cols {
				isKey := c.column != "photo_id" && c.column != "id"
				if isKey != group.byKey {
					continue
				}
				q := fmt.Sprintf(`SELECT row_to_json(t)::text FROM %s t WHERE t.%s::text = $1`,
					pgx.Identifier{c.schema, c.table}.Sanitize(), pgx.Identifier{c.column}.Sanitize())
				found, err := pool.Query(ctx, q, v)
				if err != nil {
					fmt.Fprintf(w, "-- %s.%s: %v\n", c.schema, c.table, err)
					continue
				}
				lines, err := pgx.CollectRows(found, pgx.RowTo[string])
				if err != nil {
					fmt.Fprintf(w, "-- %s.%s: %v\n", c.schema, c.table, err)
					continue
				}
				for _, l := range lines {
					fmt.Fprintf(w, "%s.%s (%s): %s\n", c.schema, c.table, c.column, l)
				}
			}
		}
	}
	return nil
}
