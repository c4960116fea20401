#!/usr/bin/env bash
# fleet-cpu.sh [KMBENCH FLAG...] — whose CPU a fleet run costs, by process.
#
# Runs the fleet alone on a fresh backlog (`kmbench throttle --scenarios none`:
# BENCH_PHOTOS photos, BENCH_WORKERS x BENCH_CONCURRENCY, seed BENCH_SEED, every S3
# request through the counting proxy) and sums every process's CPU (utime + stime
# from /proc/PID/stat) from the moment the workers start to the moment the queue is
# drained: the workers, Postgres's backends, the S3 server, kmbench (the proxy),
# fauxqs. Seeding is not counted. Run it alone: the figures are the machine's.
# Worker settings come from the environment (KEYMIGRATE_DB_GENERIC_PLANS=false ...).
# docs/performance.md ("Postgres's share") has what it found.
#
#   deploy/local/fleet-cpu.sh
#   KEYMIGRATE_DB_GENERIC_PLANS=false deploy/local/fleet-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(deploy/local/stack.sh env)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/bin/" ./cmd/worker ./internal/harness/cmd/kmbench
python3 - "$work/start" "$work/stop" > "$work/cpu" <<'PY' &
import os, sys, time
start, stop = sys.argv[1], sys.argv[2]
tick = os.sysconf('SC_CLK_TCK')
def snap():
    out = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            stat = open(f'/proc/{pid}/stat').read()
            name = open(f'/proc/{pid}/comm').read().strip()
            if name == 'postgres':  # client backends' command lines name their client: "(port)"
                name = 'postgres backends' if '(' in open(f'/proc/{pid}/cmdline').read() else 'postgres (other)'
        except OSError:
            continue
        f = stat[stat.rfind(')') + 2:].split()
        out[pid] = (name, (int(f[11]) + int(f[12])) / tick)
    return out
while not os.path.exists(start):
    time.sleep(0.1)
first, t0 = snap(), time.time()
last = dict(first)
while not os.path.exists(stop):
    time.sleep(0.5)
    for pid, v in snap().items():
        first.setdefault(pid, (v[0], 0.0))  # started in the window: all of its CPU counts
        last[pid] = v
total = {}
for pid, (name, cpu) in last.items():
    total[name] = total.get(name, 0.0) + cpu - first[pid][1]
print(f'fleet window {time.time() - t0:.1f} s: {sum(total.values()):.1f} CPU s in all')
for name, cpu in sorted(total.items(), key=lambda kv: -kv[1])[:8]:
    print(f'{cpu:8.2f} CPU s  {name}')
PY
sampler=$!
"$work/bin/kmbench" throttle --scenarios none --photos "${BENCH_PHOTOS:-2000}" --workers "${BENCH_WORKERS:-2}" \
  --concurrency "${BENCH_CONCURRENCY:-16}" --seed "${BENCH_SEED:-7}" --bin-dir "$work/bin" --log-dir "$work/logs" \
  --s3-pid-file .stack/versitygw.pid "$@" > "$work/out" 2>&1 &
bench=$!
until grep -q "worker process" "$work/out" 2>/dev/null; do kill -0 "$bench" 2>/dev/null || break; sleep 0.1; done
touch "$work/start"
until grep -q "objects in" "$work/out" 2>/dev/null; do kill -0 "$bench" 2>/dev/null || break; sleep 0.1; done
touch "$work/stop"
rc=0; wait "$bench" || rc=$?
wait "$sampler" || true
grep "objects in" "$work/out" || { cat "$work/out" >&2; exit "${rc:-1}"; }
cat "$work/cpu"
exit "$rc"
