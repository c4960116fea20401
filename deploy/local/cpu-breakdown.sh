#!/usr/bin/env bash
# cpu-breakdown.sh PROFILE... — where the workers' CPU went, by activity.
#
# Reads the Go CPU profiles that `BENCH_PROFILE=1 make bench` (or bench-throttle,
# scale-latency) has each worker write beside its log, merged, and prints the
# share of the samples spent under each activity: stacks are matched in this
# order and each sample counts once, for the first activity whose functions
# are on its stack. A second argument list after `--objects N` also prints
# milliseconds per object moved.
#
#   deploy/local/cpu-breakdown.sh .stack/bench-*/fleet-worker-*.cpu.prof --objects 6380
set -euo pipefail
objects=0
profiles=()
while (($#)); do
  case "$1" in
    --objects) objects="$2"; shift 2 ;;
    *) profiles+=("$1"); shift ;;
  esac
done
((${#profiles[@]})) || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# activity|regexp of a function on the stack (pprof -focus syntax)
activities=(
  "S3 requests: building, signing, sending, parsing (SDK)|github.com/aws/aws-sdk-go-v2/service/s3\."
  "SQS: receive, delete, visibility (SDK)|github.com/aws/aws-sdk-go-v2/service/sqs\."
  "Postgres: ledger statements and the swap (pgx)|github.com/jackc/pgx"
  "HTTP client connections: reading responses, writing requests|net/http\.\(\*persistConn\)"
  "garbage collection (background)|runtime\.gcBgMarkWorker|runtime\.bgsweep|runtime\.bgscavenge"
  "logging (zap)|go.uber.org/zap"
  "metrics server and control loop|net/http\.\(\*conn\)\.serve|keymigrate/worker\.\(\*control\)"
)

# ms_of [pprof filter flags]: the sample time, in ms, of the stacks the filters
# keep (every node shown, so pprof's header sums them all).
ms_of() {
  go tool pprof -top -nodefraction=0 -edgefraction=0 -nodecount=1000000 "$@" "${profiles[@]}" 2>/dev/null |
    sed -n 's/^Showing nodes accounting for \([0-9.]*\)\(m\{0,1\}s\),.*/\1 \2/p' | awk '{ print ($2 == "s") ? $1 * 1000 : $1 }'
}
total=$(ms_of)
[[ -n "$total" && "$total" != 0 ]] || { echo "cpu-breakdown: no samples in ${profiles[*]}" >&2; exit 1; }

ignore=""
printf '%-62s %9s %7s' "activity" "CPU ms" "share"
((objects > 0)) && printf ' %11s' "ms/object"
printf '\n'
sum=0
for a in "${activities[@]}"; do
  name="${a%%|*}" re="${a#*|}"
  args=(-focus="$re")
  [[ -n "$ignore" ]] && args+=(-ignore="$ignore")
  ms=$(ms_of "${args[@]}")
  ms=${ms:-0}
  sum=$(awk -v a="$sum" -v b="$ms" 'BEGIN { print a + b }')
  printf '%-62s %9.0f %6.1f%%' "$name" "$ms" "$(awk -v a="$ms" -v t="$total" 'BEGIN { print 100 * a / t }')"
  ((objects > 0)) && printf ' %11.3f' "$(awk -v a="$ms" -v n="$objects" 'BEGIN { print a / n }')"
  printf '\n'
  ignore="${ignore:+$ignore|}$re"
done
rest=$(awk -v t="$total" -v s="$sum" 'BEGIN { print t - s }')
printf '%-62s %9.0f %6.1f%%' "everything else (the worker's own logic, scheduling)" "$rest" "$(awk -v a="$rest" -v t="$total" 'BEGIN { print 100 * a / t }')"
((objects > 0)) && printf ' %11.3f' "$(awk -v a="$rest" -v n="$objects" 'BEGIN { print a / n }')"
printf '\n'
printf '%-62s %9.0f %6.1f%%' "total (samples in the profiles)" "$total" 100
((objects > 0)) && printf ' %11.3f' "$(awk -v a="$total" -v n="$objects" 'BEGIN { print a / n }')"
printf '\n'
