#!/usr/bin/env bash
# Benchmarks (not part of the tests); docs/performance.md explains the output.
#
#   bench.sh [bench]       `make bench`: on BENCH_PHOTOS seeded photos, the fleet
#                          (BENCH_WORKERS x BENCH_CONCURRENCY) beside a raw CopyObject
#                          loop and s5cmd v2.3.0 at the same total concurrency, S3
#                          requests per object, and the fleet with --recheck-sources=false
#   bench.sh scale-latency `make scale-latency`: SCALE_LATENCY (30ms) added to every S3
#                          request; one worker at each --concurrency of
#                          SCALE_LATENCY_CONCURRENCY ("16,64,256"), then SCALE_LATENCY_WORKERS
#                          ("1,2,4") workers at SCALE_LATENCY_FLEET_CONCURRENCY (64) each;
#                          SCALE_LATENCY_PHOTOS (2000) photos per run; SCALE_LATENCY_ENFORCE=1
#                          enforces conditional copies in front of the server, as S3 does
#   bench.sh throttle      `make bench-throttle`: the fleet (BENCH_WORKERS x BENCH_CONCURRENCY)
#                          on BENCH_PHOTOS photos with no faults, THROTTLE_FAULT_RATE (0.05) of
#                          S3 requests answered SlowDown, the same answered 500; then a hard
#                          limit of THROTTLE_LIMIT req/s (default: half the unthrottled rate)
#                          from THROTTLE_LIMIT_AFTER (10s) for THROTTLE_LIMIT_WINDOW (60s), on
#                          THROTTLE_LIMIT_PHOTOS (default: sized to outlast the window);
#                          THROTTLE_SCENARIOS ("none,slowdown,internal,limit") picks runs
#   bench.sh staged        `make staged-bench`: STAGED_PHOTOS (3000) photos seeded, none enqueued;
#                          a plan with --calibrate STAGED_CALIBRATE (20), stage 1 = a producer run
#                          on a STAGED_SAMPLE (20) percent sample drained by BENCH_WORKERS x
#                          BENCH_CONCURRENCY, migratectl plan --calibrate-run <stage 1>, stage 2 =
#                          the rest; the plan's duration against stage 2's (ledger and wall)
#   bench.sh scale-bench   `make scale-bench`: SCALE_BENCH_PHOTOS (10^7) photos loaded by SQL
#                          (synths3) with a synthetic S3 endpoint; plan, status, verify and
#                          cleanup on SCALE_BENCH_SHARDS ("1,4") shards, ledger compact:
#                          requests, Postgres work, RSS and time per 10^6 (docs/scale.md);
#                          SCALE_BENCH_ID_TYPE (uuid|bigint), SCALE_BENCH_STAGES
#                          ("legacy,finished"), SCALE_BENCH_ARGS (more kmbench flags, e.g.
#                          "--sample 1000 --inventory --only status,verify"; kmbench
#                          scale-bench --help lists them)
#
# Other settings: BENCH_PHOTOS (2000), BENCH_WORKERS (2), BENCH_CONCURRENCY (16),
# BENCH_SEED (7), BENCH_WORKER_ARGS (extra worker flags, every run), BENCH_KEEP=1
# (leave each run's database, bucket and queues), BENCH_PROFILE=1 (each worker writes a
# Go CPU profile beside its log). Logs go to .stack/bench-*/.
# The work is done by internal/harness/bench (its command is internal/harness/cmd/kmbench).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
MODE="${1:-bench}"
STATE="${KEYMIGRATE_STATE:-$ROOT/.stack}"

deploy/local/stack.sh up
eval "$(deploy/local/stack.sh env)"
# Our own copy of the binaries: bin/ may be rebuilt by someone else meanwhile.
BIN="$(mktemp -d)"
trap 'rm -rf "$BIN"' EXIT
go build -o "$BIN/" ./cmd/worker ./internal/harness/cmd/kmbench

common=(--bin-dir "$BIN" --log-dir "$STATE/bench-$(date +%Y%m%d-%H%M%S)" --s3-pid-file "$STATE/${KEYMIGRATE_S3:-versitygw}.pid"
  --seed "${BENCH_SEED:-7}" --worker-args "${BENCH_WORKER_ARGS:-}")
[[ -n "${BENCH_KEEP:-}" ]] && common+=(--keep)
[[ -n "${BENCH_PROFILE:-}" ]] && common+=(--profile)
case "$MODE" in
  bench)
    S5CMD="$(deploy/local/stack.sh s5cmd)"
    "$BIN/kmbench" bench "${common[@]}" --s5cmd "$S5CMD" --photos "${BENCH_PHOTOS:-2000}" \
      --workers "${BENCH_WORKERS:-2}" --concurrency "${BENCH_CONCURRENCY:-16}"
    ;;
  scale-latency)
    "$BIN/kmbench" scale-latency "${common[@]}" --photos "${SCALE_LATENCY_PHOTOS:-2000}" --latency "${SCALE_LATENCY:-30ms}" \
      --concurrency "${SCALE_LATENCY_CONCURRENCY:-16,64,256}" --workers "${SCALE_LATENCY_WORKERS:-1,2,4}" \
      --fleet-concurrency "${SCALE_LATENCY_FLEET_CONCURRENCY:-64}" ${SCALE_LATENCY_ENFORCE:+--enforce-conditional-copy}
    ;;
  throttle)
    "$BIN/kmbench" throttle "${common[@]}" --photos "${BENCH_PHOTOS:-2000}" \
      --workers "${BENCH_WORKERS:-2}" --concurrency "${BENCH_CONCURRENCY:-16}" \
      --scenarios "${THROTTLE_SCENARIOS:-none,slowdown,internal,limit}" --fault-rate "${THROTTLE_FAULT_RATE:-0.05}" \
      --limit "${THROTTLE_LIMIT:-0}" --limit-after "${THROTTLE_LIMIT_AFTER:-10s}" --limit-window "${THROTTLE_LIMIT_WINDOW:-60s}" \
      --limit-photos "${THROTTLE_LIMIT_PHOTOS:-0}"
    ;;
  staged)
    go build -o "$BIN/" ./cmd/migratectl
    "$BIN/kmbench" staged "${common[@]}" --migratectl "$BIN/migratectl" --photos "${STAGED_PHOTOS:-3000}" \
      --workers "${BENCH_WORKERS:-2}" --concurrency "${BENCH_CONCURRENCY:-16}" \
      --sample "${STAGED_SAMPLE:-20}" --calibrate "${STAGED_CALIBRATE:-20}"
    ;;
  scale-bench)
    # The phases are measured through the real migratectl binary.
    go build -o "$BIN/" ./cmd/migratectl
    "$BIN/kmbench" scale-bench --migratectl "$BIN/migratectl" --photos "${SCALE_BENCH_PHOTOS:-10000000}" \
      --id-type "${SCALE_BENCH_ID_TYPE:-uuid}" --shards "${SCALE_BENCH_SHARDS:-1,4}" --stages "${SCALE_BENCH_STAGES:-legacy,finished}" \
      --json "$STATE/scale-bench-$(date +%Y%m%d-%H%M%S).json" ${SCALE_BENCH_ARGS:-}
    ;;
  *) sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
