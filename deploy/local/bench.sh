#!/usr/bin/env bash
# Benchmark (not part of the tests): seed BENCH_PHOTOS photos into a fresh
# database and bucket, migrate them with BENCH_WORKERS workers of
# BENCH_CONCURRENCY each, then run a plain CopyObject loop over the same
# objects with the same total concurrency on the same server, and print both
# rates and their ratio. Only the ratio means anything on a shared machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PHOTOS="${BENCH_PHOTOS:-2000}"
WORKERS="${BENCH_WORKERS:-2}"
CONC="${BENCH_CONCURRENCY:-16}"
STATE="${KEYMIGRATE_STATE:-$ROOT/.stack}"

deploy/local/stack.sh up
eval "$(deploy/local/stack.sh env)"
go build -o bin/ ./cmd/...
name="kmbench$(date +%s)"
psql "$KEYMIGRATE_TEST_DATABASE_URL" -qc "CREATE DATABASE $name"
trap 'psql "$KEYMIGRATE_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" || true' EXIT
export DATABASE_URL="${KEYMIGRATE_TEST_DATABASE_URL%/*}/$name?sslmode=disable" KEYMIGRATE_BUCKET="$name" KEYMIGRATE_LOG_FORMAT=json
eval "$(bin/migratectl setup --create-bucket --dev-photos-table --queue-name "$name" --dlq-name "$name-dlq" --print-env)"
bin/migratectl seed --photos "$PHOTOS" --seed 7 2>/dev/null
bin/producer >/dev/null 2>&1
echo "fleet: $WORKERS workers x $CONC concurrency on $PHOTOS photos"
pids=()
for i in $(seq 1 "$WORKERS"); do
  bin/worker --drain --concurrency "$CONC" --wait-time 1s ${BENCH_WORKER_ARGS:-} 2>"$STATE/bench-worker-$i.log" & pids+=("$!")
done
for p in "${pids[@]}"; do wait "$p"; done
bin/migratectl bench-report --concurrency $((WORKERS * CONC))
bin/migratectl dev-reset --queue-name "$name" --dlq-name "$name-dlq" --yes
