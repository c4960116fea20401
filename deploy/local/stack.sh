#!/usr/bin/env bash
# The local stack keymigrate's demo and tests run against:
#   S3   versitygw v1.8.0 (posix backend, --keep-alive) on 127.0.0.1:$KEYMIGRATE_S3_PORT,
#        or, with KEYMIGRATE_S3=minio, MinIO (pinned commit) on 127.0.0.1:$KEYMIGRATE_MINIO_PORT
#   SQS  fauxqs 2.4.1 on Node 22 (npm packages, lockfile committed) on 127.0.0.1:$KEYMIGRATE_SQS_PORT
#   Postgres from $DATABASE_URL / $KEYMIGRATE_TEST_DATABASE_URL, or the local server
#            on 127.0.0.1:5432 (started if it is installed and down).
#
# Usage: stack.sh install|up|down|status|env
#   install  install the pinned servers (once; cached)
#   up       install if needed, start what is not running, wait until healthy
#   down     stop the servers this script started
#   status   show what runs
#   env      print the shell exports that point the tools and tests at the stack
#
# Everything is idempotent. State (PID files, logs, data) lives in .stack/ at
# the repository root; installed servers in $KEYMIGRATE_TOOLS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${KEYMIGRATE_STATE:-$ROOT/.stack}"
TOOLS="${KEYMIGRATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/keymigrate/tools}"
VERSITYGW_VERSION="v1.8.0"
VERSITYGW="$TOOLS/versitygw-$VERSITYGW_VERSION/versitygw"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO="$TOOLS/minio-$MINIO_VERSION/minio"
S3_IMPL="${KEYMIGRATE_S3:-versitygw}"
MINIO_PORT="${KEYMIGRATE_MINIO_PORT:-7072}"
MINIO_CONSOLE_PORT="${KEYMIGRATE_MINIO_CONSOLE_PORT:-7073}"
FAUXQS_DIR="$ROOT/deploy/local/fauxqs"
NODE="$FAUXQS_DIR/node_modules/.bin/node"
S3_PORT="${KEYMIGRATE_S3_PORT:-7070}"
SQS_PORT="${KEYMIGRATE_SQS_PORT:-9324}"
S3_ACCESS="${KEYMIGRATE_S3_ACCESS_KEY:-keymigrate}"
S3_SECRET="${KEYMIGRATE_S3_SECRET_KEY:-keymigrate-local-secret}"
PG_ADMIN_URL="${KEYMIGRATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
DEMO_DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/keymigrate_demo?sslmode=disable}"

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

install_versitygw() {
  if [[ -x "$VERSITYGW" ]]; then return; fi
  command -v go >/dev/null || die "go is needed to build versitygw $VERSITYGW_VERSION"
  log "building versitygw $VERSITYGW_VERSION (a few minutes, once) into $(dirname "$VERSITYGW")"
  mkdir -p "$(dirname "$VERSITYGW")"
  GOBIN="$(dirname "$VERSITYGW")" GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
}

install_minio() {
  if [[ -x "$MINIO" ]]; then return; fi
  command -v go >/dev/null || die "go is needed to build minio $MINIO_VERSION"
  log "building minio $MINIO_VERSION (about 15 minutes on 2 cores, once) into $(dirname "$MINIO")"
  mkdir -p "$(dirname "$MINIO")"
  GOBIN="$(dirname "$MINIO")" GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION"
}

# The S3 server the stack runs: versitygw (the default) or minio.
install_s3() {
  case "$S3_IMPL" in
    versitygw) install_versitygw ;;
    minio) install_minio ;;
    *) die "KEYMIGRATE_S3=$S3_IMPL: want versitygw or minio" ;;
  esac
}

install_fauxqs() {
  if [[ -x "$NODE" && -d "$FAUXQS_DIR/node_modules/fauxqs" ]] && "$NODE" --version | grep -q '^v22\.'; then return; fi
  command -v npm >/dev/null || die "npm is needed to install fauxqs"
  log "installing fauxqs and Node 22 from the lockfile (npm ci)"
  (cd "$FAUXQS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  "$NODE" --version | grep -q '^v22\.' || die "the npm package node did not provide Node 22 at $NODE"
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

http_up() { curl -s -o /dev/null --max-time 2 "$1"; }

wait_http() { # name url pidfile logfile
  for _ in $(seq 1 150); do
    if http_up "$2"; then return 0; fi
    if ! alive "$3"; then tail -n 20 "$4" >&2 || true; die "$1 exited during start-up; its log is $4"; fi
    sleep 0.2
  done
  tail -n 20 "$4" >&2 || true
  die "$1 did not answer on $2 within 30s; its log is $4"
}

start_s3() {
  local pid="$STATE/versitygw.pid" logf="$STATE/versitygw.log" data="$STATE/s3"
  if alive "$pid" && http_up "http://127.0.0.1:$S3_PORT/"; then return; fi
  if http_up "http://127.0.0.1:$S3_PORT/"; then die "port $S3_PORT is taken by another program; set KEYMIGRATE_S3_PORT"; fi
  mkdir -p "$data"
  log "starting versitygw on 127.0.0.1:$S3_PORT (data in $data)"
  nohup "$VERSITYGW" --port "127.0.0.1:$S3_PORT" --access "$S3_ACCESS" --secret "$S3_SECRET" \
    --keep-alive --quiet posix "$data" >"$logf" 2>&1 </dev/null &
  echo $! >"$pid"
  wait_http versitygw "http://127.0.0.1:$S3_PORT/" "$pid" "$logf"
}

start_minio() {
  local pid="$STATE/minio.pid" logf="$STATE/minio.log" data="$STATE/minio"
  local health="http://127.0.0.1:$MINIO_PORT/minio/health/live"
  if alive "$pid" && http_up "$health"; then return; fi
  if http_up "http://127.0.0.1:$MINIO_PORT/"; then die "port $MINIO_PORT is taken by another program; set KEYMIGRATE_MINIO_PORT"; fi
  mkdir -p "$data"
  log "starting minio on 127.0.0.1:$MINIO_PORT (data in $data)"
  MINIO_ROOT_USER="$S3_ACCESS" MINIO_ROOT_PASSWORD="$S3_SECRET" MINIO_BROWSER=off MINIO_UPDATE=off \
    nohup "$MINIO" server "$data" --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" --quiet \
    >"$logf" 2>&1 </dev/null &
  echo $! >"$pid"
  wait_http minio "$health" "$pid" "$logf"
}

start_selected_s3() {
  case "$S3_IMPL" in
    versitygw) start_s3 ;;
    minio) start_minio ;;
    *) die "KEYMIGRATE_S3=$S3_IMPL: want versitygw or minio" ;;
  esac
}

s3_port() { if [[ "$S3_IMPL" == minio ]]; then echo "$MINIO_PORT"; else echo "$S3_PORT"; fi; }

start_sqs() {
  # No DATA_DIR: fauxqs 2.4.1's SQLite persistence fails a ChangeMessageVisibility
  # to 0 (HTTP 500, then MessageNotInflight) and drops the message from memory,
  # which would lose messages a stopping worker releases. In memory it is correct.
  local pid="$STATE/fauxqs.pid" logf="$STATE/fauxqs.log"
  if alive "$pid" && http_up "http://127.0.0.1:$SQS_PORT/"; then return; fi
  if http_up "http://127.0.0.1:$SQS_PORT/"; then die "port $SQS_PORT is taken by another program; set KEYMIGRATE_SQS_PORT"; fi
  # fauxqs always listens on all interfaces (it has no bind option); the stack
  # is for development machines and CI only.
  log "starting fauxqs on port $SQS_PORT (in memory)"
  PORT="$SQS_PORT" NODE_NO_WARNINGS=1 nohup "$NODE" "$FAUXQS_DIR/server.mjs" >"$logf" 2>&1 </dev/null &
  echo $! >"$pid"
  wait_http fauxqs "http://127.0.0.1:$SQS_PORT/" "$pid" "$logf"
}

ensure_postgres() {
  command -v pg_isready >/dev/null || { log "pg_isready not found; assuming Postgres at \$KEYMIGRATE_TEST_DATABASE_URL is reachable"; return; }
  if pg_isready -q -d "$PG_ADMIN_URL"; then return; fi
  if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
    local v; v="$(ls /etc/postgresql | sort -V | tail -n 1)"
    log "starting the local Postgres cluster $v/main"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  fi
  for _ in $(seq 1 50); do pg_isready -q -d "$PG_ADMIN_URL" && return; sleep 0.2; done
  die "Postgres does not answer at $PG_ADMIN_URL; start it, or set KEYMIGRATE_TEST_DATABASE_URL"
}

stop_one() { # name pidfile
  if alive "$2"; then
    log "stopping $1"
    kill "$(cat "$2")" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$2" || break; sleep 0.1; done
    alive "$2" && kill -9 "$(cat "$2")" 2>/dev/null || true
  fi
  rm -f "$2"
}

print_env() {
  cat <<ENV
export AWS_ACCESS_KEY_ID=$S3_ACCESS
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$(s3_port)
export KEYMIGRATE_S3=$S3_IMPL
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$SQS_PORT
export KEYMIGRATE_TEST_DATABASE_URL='$PG_ADMIN_URL'
export DATABASE_URL='$DEMO_DATABASE_URL'
export KEYMIGRATE_BUCKET=\${KEYMIGRATE_BUCKET:-keymigrate-demo}
ENV
}

case "${1:-}" in
  install) install_s3; install_fauxqs ;;
  up)
    mkdir -p "$STATE"
    install_s3; install_fauxqs
    ensure_postgres; start_selected_s3; start_sqs
    log "up: S3 ($S3_IMPL) http://127.0.0.1:$(s3_port), SQS http://127.0.0.1:$SQS_PORT, Postgres $PG_ADMIN_URL"
    ;;
  down) stop_one fauxqs "$STATE/fauxqs.pid"; stop_one versitygw "$STATE/versitygw.pid"; stop_one minio "$STATE/minio.pid" ;;
  status)
    for s in versitygw minio fauxqs; do
      if alive "$STATE/$s.pid"; then echo "$s: running (pid $(cat "$STATE/$s.pid"))"; else echo "$s: stopped"; fi
    done
    if command -v pg_isready >/dev/null && pg_isready -q -d "$PG_ADMIN_URL"; then echo "postgres: up"; else echo "postgres: down"; fi
    ;;
  env) print_env ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
