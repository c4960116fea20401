#!/usr/bin/env bash
# Producer throughput and memory on the local stack (not part of the tests):
# for each size, a fresh database with SIZE legacy rows in photos (inserted
# with generate_series: the producer never reads S3), a fresh queue, then one
# producer run (or SHARDS producers of one run) measured with /usr/bin/time.
# Prints messages/s over the whole run and per 10 s window, and the peak RSS.
#
#   deploy/local/producer-bench.sh                 # 10k, 100k, 1M rows, 3 runs each
#   SIZES="1000000" RUNS=1 SHARDS=2 deploy/local/producer-bench.sh
#   BIN=/path/to/older/binaries deploy/local/producer-bench.sh   # compare a build
#   PRODUCER_FLAGS="--in-flight 1 --group-size 100" deploy/local/producer-bench.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
eval "$("$ROOT/deploy/local/stack.sh" env)"
SIZES="${SIZES:-10000 100000 1000000}"
RUNS="${RUNS:-3}"
SHARDS="${SHARDS:-1}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
if [[ -z "${BIN:-}" ]]; then
  BIN="$OUT/bin"
  (cd "$ROOT" && go build -o "$BIN/" ./cmd/producer ./cmd/migratectl)
fi
DB=keymigrate_producer_bench
ADMIN="$KEYMIGRATE_TEST_DATABASE_URL"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
export KEYMIGRATE_BUCKET=keymigrate-producer-bench KEYMIGRATE_LOG_FORMAT=json
command -v /usr/bin/time >/dev/null || { echo "producer-bench: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

for size in $SIZES; do
  for run in $(seq 1 "$RUNS"); do
    psql -qX "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
    "$BIN/migratectl" dev-reset --queue-name pb --dlq-name pb-dlq --yes >/dev/null 2>&1 || true
    eval "$("$BIN/migratectl" setup --dev-photos-table --create-bucket --queue-name pb --dlq-name pb-dlq --print-env)"
    psql -qX "$DATABASE_URL" -c "
INSERT INTO photos (id, owner_id, original_key, processed_key, thumbnail_key)
SELECT md5('p'||i)::uuid, md5('o'||(i%50000))::uuid::text, 'uploaded/'||md5('j'||i)::uuid||'.jpg',
       CASE WHEN i%3<>0 THEN 'restored/'||md5('j'||i)::uuid||'/'||md5('r'||i)::uuid||'.jpg' END,
       'thumbnails/'||md5('j'||i)::uuid||'.jpg'
  FROM generate_series(1, $size) i" -c "VACUUM ANALYZE"
    log="$OUT/producer-$size-$run"
    start=$(date +%s.%N)
    pids=()
    for i in $(seq 0 $((SHARDS - 1))); do
      shard=(); ((SHARDS > 1)) && shard=(--shard "$i/$SHARDS" --run-id bench)
      /usr/bin/time -v "$BIN/producer" "${shard[@]}" ${PRODUCER_FLAGS:-} >"$log.$i.out" 2>"$log.$i.err" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    end=$(date +%s.%N)
    rss=$(grep -h "Maximum resident" "$log".*.err | awk '{print $NF}' | sort -n | tail -1)
    python3 - "$size" "$run" "$start" "$end" "$rss" "$SHARDS" "$log" <<'PY'
import sys, json, glob, datetime
size, run, start, end, rss, shards, log = sys.argv[1:]
size, start, end = int(size), float(start), float(end)
windows = {}
for f in glob.glob(log + ".*.err"):
    prev = None
    for line in open(f):
        if '"producer progress"' not in line and '"producer run"' not in line:
            continue
        d = json.loads(line)
        t = datetime.datetime.fromisoformat(d["ts"].replace("Z", "+00:00")).timestamp()
        n = d.get("enqueued", 0)
        if prev:
            w = int((t - start) // 10)
            windows.setdefault(w, []).append((n - prev[1]) / (t - prev[0]))
        prev = (t, n)
rates = [round(sum(v)) for _, v in sorted(windows.items())]
print(f"rows={size} run={run} shards={shards} seconds={end-start:.1f} msgs_per_s={size/(end-start):.0f} max_rss_mib={int(rss)/1024:.0f} per_10s={rates}")
PY
  done
done
echo "logs in $OUT" >&2
