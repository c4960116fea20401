#!/usr/bin/env bash
# Scaling measurement (not part of the tests): the same seeded backlog migrated
# by 1, 2 and 4 worker processes in turn, each run on a fresh database, bucket
# and queues of the local stack, and the fleet's photos/s for each with its
# ratio to one worker. Also prints where the CPU went, because on a small
# machine the workers share it with versitygw, fauxqs and Postgres.
#
# Settings: SCALE_WORKERS ("1 2 4"), SCALE_PHOTOS (1500), SCALE_SEED (7),
# SCALE_CONCURRENCY (8, each worker's --concurrency), SCALE_REPEATS (1; with
# more, the median run of each size is reported).
#
# photos/s is read from the ledger: photos finished (migrated or archived)
# divided by the time from the first photo a worker started to the last one it
# finished, so process start-up and the final drain polls do not count.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
SIZES="${SCALE_WORKERS:-1 2 4}"
PHOTOS="${SCALE_PHOTOS:-1500}"
SEED="${SCALE_SEED:-7}"
CONC="${SCALE_CONCURRENCY:-8}"
REPEATS="${SCALE_REPEATS:-1}"
STATE="${KEYMIGRATE_STATE:-$ROOT/.stack}"

deploy/local/stack.sh up
eval "$(deploy/local/stack.sh env)"
export KEYMIGRATE_LOG_FORMAT=json
# Our own copy of the binaries: bin/ may be rebuilt by someone else meanwhile.
BIN="$(mktemp -d)"
go build -o "$BIN/" ./cmd/...

pids=() name=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n "$name" ]]; then
    "$BIN/migratectl" dev-reset --queue-name "$name" --dlq-name "$name-dlq" --yes >/dev/null 2>&1 || true
    psql "$KEYMIGRATE_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$BIN"
}
trap cleanup EXIT

cpu_total() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat; } # jiffies: all, idle+iowait
proc_cpu() { # summed user+system jiffies of the PIDs in the given pidfiles
  local sum=0 f p
  for f in "$@"; do
    p="$(cat "$f" 2>/dev/null || true)"
    [[ -n "$p" && -r /proc/$p/stat ]] && sum=$((sum + $(awk '{print $14+$15}' "/proc/$p/stat")))
  done
  echo "$sum"
}
children_cpu() { awk '{print $16+$17}' "/proc/$$/stat"; } # jiffies of this shell's waited-for children
HZ="$(getconf CLK_TCK)"

# run N: one measured run with N workers; sets RESULT to
# "photos seconds cpu-busy% worker-cpu-s server-cpu-s".
run() {
  local n="$1"
  name="kmscale$(date +%s)n$n"
  psql "$KEYMIGRATE_TEST_DATABASE_URL" -qc "CREATE DATABASE $name"
  export DATABASE_URL="${KEYMIGRATE_TEST_DATABASE_URL%/*}/$name?sslmode=disable" KEYMIGRATE_BUCKET="$name"
  eval "$("$BIN/migratectl" setup --create-bucket --dev-photos-table --queue-name "$name" --dlq-name "$name-dlq" --print-env)"
  "$BIN/migratectl" seed --photos "$PHOTOS" --seed "$SEED" >/dev/null 2>&1
  "$BIN/producer" >/dev/null 2>&1
  local c0 i0 s0 w0 c1 i1 s1 w1
  read -r c0 i0 < <(cpu_total); s0="$(proc_cpu "$STATE/versitygw.pid" "$STATE/fauxqs.pid")"; w0="$(children_cpu)"
  pids=()
  for i in $(seq 1 "$n"); do
    "$BIN/worker" --drain --concurrency "$CONC" --wait-time 1s 2>"$STATE/scale-worker-$i.log" & pids+=("$!")
  done
  for p in "${pids[@]}"; do wait "$p"; done
  pids=()
  read -r c1 i1 < <(cpu_total); s1="$(proc_cpu "$STATE/versitygw.pid" "$STATE/fauxqs.pid")"; w1="$(children_cpu)"
  local row
  row="$(psql "$DATABASE_URL" -tAF' ' -c "
SELECT count(*), round(extract(epoch FROM max(greatest(swapped_at, archived_at)) - min(started_at))::numeric, 2)
  FROM keymigrate.photo_moves WHERE state IN ('migrated', 'archived')")"
  local failed
  failed="$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM keymigrate.photo_moves WHERE state NOT IN ('migrated', 'archived')")"
  [[ "$failed" == 0 ]] || echo "warning: $failed photos not finished with $n workers" >&2
  "$BIN/migratectl" dev-reset --queue-name "$name" --dlq-name "$name-dlq" --yes >/dev/null
  psql "$KEYMIGRATE_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)"
  name=""
  RESULT="$(awk -v row="$row" -v c="$((c1 - c0))" -v i="$((i1 - i0))" -v s="$((s1 - s0))" -v w="$((w1 - w0))" -v hz="$HZ" 'BEGIN{
    split(row, r, " "); printf "%d %.2f %.0f %.1f %.1f\n", r[1], r[2], 100*(c-i)/c, w/hz, s/hz }')"
}

echo "scale: $PHOTOS photos (--seed $SEED), workers of --concurrency $CONC, sizes: $SIZES, repeats: $REPEATS; $(nproc) CPUs"
declare -A rate result
for n in $SIZES; do
  lines=()
  for r in $(seq 1 "$REPEATS"); do
    run "$n"
    line="$RESULT"
    lines+=("$line")
    echo "  run $r with $n workers: $line (photos seconds cpu-busy% worker-cpu-s server-cpu-s)" >&2
  done
  # The median run by photos/s.
  result[$n]="$(printf '%s\n' "${lines[@]}" | awk '{printf "%.6f %s\n", $1/$2, $0}' | sort -n | awk -v m="$(( (REPEATS + 1) / 2 ))" 'NR==m{$1=""; print substr($0,2)}')"
  rate[$n]="$(awk '{printf "%.1f", $1/$2}' <<<"${result[$n]}")"
done
first="${SIZES%% *}"
printf '\n%-8s %-7s %-8s %-9s %-10s %-9s %-14s %s\n' workers photos seconds photos/s "ratio/1" "cpu busy" "worker CPU/ph" "vgw+fauxqs CPU/ph"
for n in $SIZES; do
  read -r photos secs busy wcpu scpu <<<"${result[$n]}"
  awk -v n="$n" -v p="$photos" -v s="$secs" -v r="${rate[$n]}" -v r1="${rate[$first]}" -v b="$busy" -v w="$wcpu" -v sc="$scpu" 'BEGIN{
    printf "%-8d %-7d %-8.1f %-9.1f %-10.2f %-9s %-14s %s\n", n, p, s, r, r/r1, b "%", sprintf("%.1f ms", 1000*w/p), sprintf("%.1f ms", 1000*sc/p) }'
done
