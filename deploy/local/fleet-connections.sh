#!/usr/bin/env bash
# How many Postgres server connections a fleet holds (not part of the tests):
# a fresh database seeded with PHOTOS legacy photos, the producer, then WORKERS
# worker processes x CONCURRENCY (default 8 x 128, --db-max-conns 8) draining
# the queue, directly or through PgBouncer (VIA=pgbouncer), while
# pg_stat_activity is sampled every 100 ms. Prints the peak number of server
# connections to the database (and, through PgBouncer, the peak of its
# clients), photos/s and the workers' peak RSS.
#
#   deploy/local/fleet-connections.sh
#   VIA=pgbouncer deploy/local/fleet-connections.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
eval "$("$ROOT/deploy/local/stack.sh" env)"
PHOTOS="${PHOTOS:-3000}" WORKERS="${WORKERS:-8}" CONCURRENCY="${CONCURRENCY:-128}" DB_MAX_CONNS="${DB_MAX_CONNS:-8}" VIA="${VIA:-direct}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
BIN="${BIN:-$OUT/bin}"
[[ -x "$BIN/worker" ]] || (cd "$ROOT" && go build -o "$BIN/" ./cmd/...)
DB=keymigrate_fleet_conns
ADMIN="$KEYMIGRATE_TEST_DATABASE_URL"
DIRECT="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
export DATABASE_URL="$DIRECT" KEYMIGRATE_BUCKET="keymigrate-fleet-conns-$(date +%s)" KEYMIGRATE_LOG_FORMAT=json
psql -qX "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
"$BIN/migratectl" dev-reset --queue-name fc --dlq-name fc-dlq --yes >/dev/null 2>&1 || true
eval "$("$BIN/migratectl" setup --dev-photos-table --create-bucket --queue-name fc --dlq-name fc-dlq --print-env)"
"$BIN/migratectl" seed --photos "$PHOTOS" --seed 7 >/dev/null
"$BIN/producer" >/dev/null 2>&1

flags=(--drain --concurrency "$CONCURRENCY" --db-max-conns "$DB_MAX_CONNS" --wait-time 2s)
url="$DIRECT&application_name=fleet-conns"
if [[ "$VIA" == pgbouncer ]]; then
  url="${KEYMIGRATE_TEST_PGBOUNCER_URL%%/test*}/$DB?sslmode=disable&application_name=fleet-conns"
  flags+=(--db-timeouts-from-server)
fi
start=$(date +%s.%N)
pids=()
for i in $(seq 1 "$WORKERS"); do
  DATABASE_URL="$url" /usr/bin/time -v "$BIN/worker" "${flags[@]}" >/dev/null 2>"$OUT/worker-$i.err" &
  pids+=($!)
done
peak=0 peak_clients=0 samples=0
while kill -0 "${pids[@]}" 2>/dev/null; do
  n=$(psql -XAt "$ADMIN" -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB' AND backend_type = 'client backend'")
  ((n > peak)) && peak=$n
  if [[ "$VIA" == pgbouncer ]]; then
    c=$(psql -XAt "${KEYMIGRATE_TEST_PGBOUNCER_URL%%/test*}/pgbouncer" -c "SHOW CLIENTS" 2>/dev/null | awk -F'|' -v db="$DB" '$3==db' | wc -l || echo 0)
    ((c > peak_clients)) && peak_clients=$c
  fi
  samples=$((samples + 1))
  sleep 0.1
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
end=$(date +%s.%N)
done_photos=$(psql -XAt "$DIRECT" -c "SELECT count(*) FROM keymigrate.photo_moves WHERE state IN ('migrated','archived')")
rss=$(grep -h "Maximum resident" "$OUT"/worker-*.err | awk '{print $NF}' | sort -n | tail -1)
echo "workers=$WORKERS concurrency=$CONCURRENCY db_max_conns=$DB_MAX_CONNS via=$VIA photos_done=$done_photos/$PHOTOS seconds=$(python3 -c "print(f'{$end-$start:.1f}')") photos_per_s=$(python3 -c "print(f'{$done_photos/($end-$start):.1f}')") peak_server_connections=$peak peak_pgbouncer_clients=$peak_clients samples=$samples worker_max_rss_mib=$((rss / 1024)) exit=$status"
echo "logs in $OUT" >&2
