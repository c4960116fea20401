#!/usr/bin/env bash
# The README's first command: a real migration of seeded legacy photos on the
# local stack. Brings the stack up, creates the demo database, sets up the
# ledger and queues, seeds DEMO_PHOTOS legacy photos (only if the database has
# none), makes the pre-flight plan (migratectl plan), runs the producer, then
# DEMO_WORKERS worker processes while `migratectl status --watch` shows
# progress, and ends with `migratectl verify --deep` and the final status.
#
# Running it again migrates nothing new: the producer finds no legacy photo and
# the workers drain at once. `make demo-reset` starts over.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PHOTOS="${DEMO_PHOTOS:-1000}"
WORKERS="${DEMO_WORKERS:-3}"
STATE="${KEYMIGRATE_STATE:-$ROOT/.stack}"

step() { printf '\n==> %s\n' "$*"; }

step "starting the local stack (Postgres, versitygw as S3, fauxqs as SQS)"
deploy/local/stack.sh up
eval "$(deploy/local/stack.sh env)"
export KEYMIGRATE_LOG_FORMAT=json

step "building producer, worker and migratectl into bin/"
go build -o bin/ ./cmd/...

db="$(printf '%s' "$DATABASE_URL" | sed -E 's#^[a-z]+://[^/]*/([^?]*).*#\1#')"
# The demo database and the demo bucket belong together. versitygw keeps a
# bucket as a directory of .stack/s3; if that is gone (a fresh clone, a wiped
# .stack) while the database survived, its rows point at objects that no longer
# exist, so the demo starts over.
if [[ ! -d "$STATE/s3/$KEYMIGRATE_BUCKET" ]] && psql "$KEYMIGRATE_TEST_DATABASE_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  step "database $db has no bucket in this stack's S3 data: dropping it to start over"
  psql "$KEYMIGRATE_TEST_DATABASE_URL" -qc "DROP DATABASE \"$db\" WITH (FORCE)"
fi
if ! psql "$KEYMIGRATE_TEST_DATABASE_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  step "creating database $db"
  psql "$KEYMIGRATE_TEST_DATABASE_URL" -qc "CREATE DATABASE \"$db\""
fi

step "setting up the ledger schema, the bucket and the queues"
eval "$(bin/migratectl setup --create-bucket --dev-photos-table --queue-name keymigrate-demo --dlq-name keymigrate-demo-dlq --print-env)"
echo "queue $KEYMIGRATE_QUEUE_URL, dead-letter queue $KEYMIGRATE_DLQ_URL, bucket $KEYMIGRATE_BUCKET"

step "seeding $PHOTOS legacy photos (skipped if the demo database has some already)"
bin/migratectl seed --photos "$PHOTOS" --if-empty

step "migratectl plan: the pre-flight report (read-only; latency calibrated on 20 photos copied to a scratch prefix)"
bin/migratectl plan --calibrate 20 --workers "$WORKERS" --concurrency 8

step "producer: enqueuing every legacy photo"
bin/producer 2>"$STATE/demo-producer.log"

step "running $WORKERS workers (logs in $STATE/demo-worker-N.log) while status watches"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
for i in $(seq 1 "$WORKERS"); do
  bin/worker --drain --concurrency 8 --listen "127.0.0.1:$((9100 + i))" 2>"$STATE/demo-worker-$i.log" &
  pids+=("$!")
done
echo "worker metrics while they run: http://127.0.0.1:9101/metrics (and 9102, …)"
bin/migratectl status --watch --until-idle --interval 1s
# The workers linger a few seconds to be sure the queue stays empty: show what
# the first one counted (best effort: it may already have exited).
curl -s --max-time 2 http://127.0.0.1:9101/metrics | grep -E '^keymigrate_(photos_processed_total|objects_copied_total|bytes_copied_total)' | sed 's/^/worker 1 metric: /' || true
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
trap - EXIT INT TERM
[[ $failed == 0 ]] || { echo "a worker failed; see $STATE/demo-worker-*.log" >&2; exit 1; }
for i in $(seq 1 "$WORKERS"); do
  grep -h '"worker stopped"' "$STATE/demo-worker-$i.log" | sed -E 's/.*"migrated":([0-9]+).*"archived":([0-9]+).*"objects_copied":([0-9]+).*/'"worker $i: migrated \1, archived \2, objects copied \3/"
done

step "verify --deep: rows point only at users/{owner}/ keys that exist; every copy equals its legacy object"
bin/migratectl verify --deep
