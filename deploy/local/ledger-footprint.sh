#!/usr/bin/env bash
# The ledger's footprint per migrated photo and per moved object, and its
# projection to a billion photos (not part of the tests). Reads the database
# at DATABASE_URL (a finished run: seed, producer, workers). With COMPACT=1 it
# first rewrites the ledger tables (VACUUM FULL) so that only live rows count:
# autovacuum reuses dead space but never gives it back.
#
#   DATABASE_URL=postgres://…/db deploy/local/ledger-footprint.sh
#   PHOTOS=1e9 OBJECTS=3.2e9 COMPACT=1 deploy/local/ledger-footprint.sh
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL to a database holding a finished run}"
PHOTOS="${PHOTOS:-1e9}" OBJECTS="${OBJECTS:-3.2e9}"
if [[ "${COMPACT:-0}" == 1 ]]; then
  for t in photo_moves object_moves failures object_audit; do
    if [[ "$(psql -XAt "$DATABASE_URL" -c "SELECT to_regclass('keymigrate.$t') IS NOT NULL")" == t ]]; then
      psql -qX "$DATABASE_URL" -c "VACUUM FULL keymigrate.$t"
    fi
  done
  psql -qX "$DATABASE_URL" -c "ANALYZE"
fi
# Photos migrated (or archived, or cleaned) and objects moved, compacted ones included.
n_photos=$(psql -XAt "$DATABASE_URL" -c "SELECT count(*) FROM keymigrate.photo_moves WHERE state IN ('migrated', 'cleaned', 'archived')")
n_objects=$(psql -XAt "$DATABASE_URL" -c "SELECT count(*) FROM keymigrate.object_moves WHERE committed_at IS NOT NULL")
if [[ "$(psql -XAt "$DATABASE_URL" -c "SELECT to_regclass('keymigrate.object_audit') IS NOT NULL")" == t ]]; then
  n_objects=$((n_objects + $(psql -XAt "$DATABASE_URL" -c "SELECT coalesce(sum(moves), 0) FROM keymigrate.object_audit")))
fi
psql -X "$DATABASE_URL" -v photos="$PHOTOS" -v objects="$OBJECTS" -v n_photos="$n_photos" -v n_objects="$n_objects" <<'SQL'
\pset footer off
WITH n AS (SELECT :n_photos::bigint AS photos, :n_objects::bigint AS objects), rel AS (
  SELECT c.oid, c.relname, c.relkind, t.relname AS tbl,
         CASE WHEN c.relkind = 'i' THEN pg_relation_size(c.oid) ELSE pg_table_size(c.oid) END AS bytes
    FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
    LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid
   WHERE s.nspname = 'keymigrate' AND c.relkind IN ('r', 'i', 'p')
)
SELECT coalesce(tbl, relname) AS "table", CASE relkind WHEN 'i' THEN relname ELSE '(rows)' END AS part,
       pg_size_pretty(bytes) AS size,
       round(bytes::numeric / nullif(n.photos, 0)) AS "bytes/photo",
       round(bytes::numeric / nullif(n.objects, 0)) AS "bytes/object"
  FROM rel, n WHERE bytes > 8192
 ORDER BY coalesce(tbl, relname), relkind DESC, bytes DESC;
WITH n AS (SELECT :n_photos::bigint AS photos, :n_objects::bigint AS objects), t AS (
  SELECT sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname NOT IN ('object_moves', 'object_audit')) AS photo_bytes,
         sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname IN ('object_moves', 'object_audit')) AS object_bytes,
         sum(pg_total_relation_size(c.oid)) AS all_bytes
    FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'keymigrate' AND c.relkind = 'r'
)
SELECT n.photos AS photos, n.objects AS objects, round(n.objects::numeric / nullif(n.photos, 0), 2) AS "objects/photo",
       round(all_bytes::numeric / nullif(n.photos, 0)) AS "ledger bytes/photo",
       round(photo_bytes::numeric / nullif(n.photos, 0)) AS "photo tables bytes/photo",
       round(object_bytes::numeric / nullif(n.objects, 0)) AS "object tables bytes/object",
       round((photo_bytes::numeric / nullif(n.photos, 0) * :photos + object_bytes::numeric / nullif(n.objects, 0) * :objects) / 1e12, 2) || ' TB' AS "projected to PHOTOS, OBJECTS (10^12 B)"
  FROM n, t;
SQL
