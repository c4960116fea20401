#!/usr/bin/env bash
# The local stack keymigrate's demo and tests run against:
#   S3   versitygw v1.8.0 (posix backend, --keep-alive) on 127.0.0.1:$KEYMIGRATE_S3_PORT,
#        or, with KEYMIGRATE_S3=minio, MinIO (pinned commit) on 127.0.0.1:$KEYMIGRATE_MINIO_PORT
#   SQS  fauxqs 2.4.1 on Node 22 (npm packages, lockfile committed) on 127.0.0.1:$KEYMIGRATE_SQS_PORT,
#        or, with KEYMIGRATE_SQS=local-aws-sqs, local-aws-sqs 2.0.2 on Node 20 (npm
#        packages, lockfile committed, installed in $KEYMIGRATE_TOOLS) on
#        127.0.0.1:$KEYMIGRATE_LOCAL_AWS_SQS_PORT: it has message move tasks
#   Postgres from $DATABASE_URL / $KEYMIGRATE_TEST_DATABASE_URL, or the local server
#            on 127.0.0.1:5432 (started if it is installed and down).
#   PgBouncer 1.18.0 (Debian 12's package) on 127.0.0.1:$KEYMIGRATE_PGBOUNCER_PORT in
#            transaction pooling mode in front of that Postgres, for the tests that
#            run the fleet through it (docs/performance-database.md).
#
# Usage: stack.sh install|up|down|status|env|s5cmd
#   install  install the pinned servers (once; cached; PgBouncer with apt-get)
#   up       install if needed, start what is not running, wait until healthy
#   down     stop the servers this script started (every variant's)
#   status   show what runs
#   env      print the shell exports that point the tools and tests at the stack
#   s5cmd    install s5cmd v2.3.0 if needed (the benchmark's peer, not a server)
#            and print its path
#
# Everything is idempotent. State (PID files, logs, data) lives in .stack/ at
# the repository root; installed servers in $KEYMIGRATE_TOOLS. A variant
# (KEYMIGRATE_S3=minio, KEYMIGRATE_SQS=local-aws-sqs) has its own port and PID
# file, so its `up` runs beside the default stack: it starts the variant's
# server and finds the others already running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${KEYMIGRATE_STATE:-$ROOT/.stack}"
TOOLS="${KEYMIGRATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/keymigrate/tools}"
VERSITYGW_VERSION="v1.8.0"
VERSITYGW="$TOOLS/versitygw-$VERSITYGW_VERSION/versitygw"
S5CMD_VERSION="v2.3.0"
S5CMD="$TOOLS/s5cmd-$S5CMD_VERSION/s5cmd"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO="$TOOLS/minio-$MINIO_VERSION/minio"
S3_IMPL="${KEYMIGRATE_S3:-versitygw}"
MINIO_PORT="${KEYMIGRATE_MINIO_PORT:-7072}"
MINIO_CONSOLE_PORT="${KEYMIGRATE_MINIO_CONSOLE_PORT:-7073}"
FAUXQS_DIR="$ROOT/deploy/local/fauxqs"
NODE="$FAUXQS_DIR/node_modules/.bin/node"
SQS_IMPL="${KEYMIGRATE_SQS:-fauxqs}"
LOCAL_AWS_SQS_VERSION="2.0.2"
# The committed package.json, lockfile and server script; installed (npm ci)
# into a copy in $TOOLS, since server.mjs imports from the node_modules beside it.
LOCAL_AWS_SQS_SRC="$ROOT/deploy/local/local-aws-sqs"
LOCAL_AWS_SQS_DIR="$TOOLS/local-aws-sqs-$LOCAL_AWS_SQS_VERSION"
LOCAL_AWS_SQS_NODE="$LOCAL_AWS_SQS_DIR/node_modules/.bin/node"
LOCAL_AWS_SQS_PORT="${KEYMIGRATE_LOCAL_AWS_SQS_PORT:-9325}"
S3_PORT="${KEYMIGRATE_S3_PORT:-7070}"
SQS_PORT="${KEYMIGRATE_SQS_PORT:-9324}"
S3_ACCESS="${KEYMIGRATE_S3_ACCESS_KEY:-keymigrate}"
S3_SECRET="${KEYMIGRATE_S3_SECRET_KEY:-keymigrate-local-secret}"
PG_ADMIN_URL="${KEYMIGRATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
# Debian 12 (bookworm) ships PgBouncer 1.18.0: no prepared statements in
# transaction mode (1.21) and no `options` startup parameter (1.20); the fleet
# copes (unnamed statements, timeouts from connect_query).
PGBOUNCER_DEB_VERSION="${KEYMIGRATE_PGBOUNCER_DEB_VERSION:-1.18.0-1+deb12u1}"
PGBOUNCER_PORT="${KEYMIGRATE_PGBOUNCER_PORT:-6433}"
DEMO_DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/keymigrate_demo?sslmode=disable}"

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

# A misspelt variant is refused before anything is installed or started.
case "$S3_IMPL" in versitygw | minio) ;; *) die "KEYMIGRATE_S3=$S3_IMPL: want versitygw or minio" ;; esac
case "$SQS_IMPL" in fauxqs | local-aws-sqs) ;; *) die "KEYMIGRATE_SQS=$SQS_IMPL: want fauxqs or local-aws-sqs" ;; esac

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

# s5cmd is the peer `make bench` compares the fleet with. `go install
# github.com/peak/s5cmd/v2@v2.3.0` fails here (the module proxy answers 403 to
# the module's version list, which go install reads for deprecations), so it
# is built from a throwaway module that requires exactly that version; its
# dependencies are the versions its own go.mod pins.
install_s5cmd() {
  if [[ -x "$S5CMD" ]]; then return; fi
  command -v go >/dev/null || die "go is needed to build s5cmd $S5CMD_VERSION"
  log "building s5cmd $S5CMD_VERSION (a minute, once) into $(dirname "$S5CMD")"
  mkdir -p "$(dirname "$S5CMD")"
  local mod
  mod="$(mktemp -d)"
  (
    trap 'rm -rf "$mod"' EXIT
    cd "$mod"
    export GOWORK=off GOFLAGS=-mod=mod
    go mod init keymigrate.local/s5cmd-build >/dev/null 2>&1
    go get "github.com/peak/s5cmd/v2@$S5CMD_VERSION" >get.log 2>&1 || { cat get.log >&2; exit 1; }
    go build -ldflags "-X=github.com/peak/s5cmd/v2/version.Version=$S5CMD_VERSION -X=github.com/peak/s5cmd/v2/version.GitCommit=release" \
      -o "$S5CMD.tmp" github.com/peak/s5cmd/v2
  ) || die "could not build s5cmd $S5CMD_VERSION"
  mv "$S5CMD.tmp" "$S5CMD"
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

# local-aws-sqs is the second SQS server: fauxqs lacks message move tasks
# (StartMessageMoveTask), which `dlq redrive` uses on AWS. Installed from the
# committed lockfile into $LOCAL_AWS_SQS_DIR, and again when the lockfile
# changes; the server script is copied beside its node_modules every time.
install_local_aws_sqs() {
  local have
  have="$LOCAL_AWS_SQS_DIR/node_modules/local-aws-sqs/package.json"
  if ! { [[ -x "$LOCAL_AWS_SQS_NODE" && -f "$have" ]] \
    && grep -q "\"version\": \"$LOCAL_AWS_SQS_VERSION\"" "$have" \
    && cmp -s "$LOCAL_AWS_SQS_SRC/package-lock.json" "$LOCAL_AWS_SQS_DIR/package-lock.json" \
    && "$LOCAL_AWS_SQS_NODE" --version | grep -q '^v20\.'; }; then
    command -v npm >/dev/null || die "npm is needed to install local-aws-sqs $LOCAL_AWS_SQS_VERSION"
    log "installing local-aws-sqs $LOCAL_AWS_SQS_VERSION and Node 20 from the lockfile (npm ci) into $LOCAL_AWS_SQS_DIR"
    mkdir -p "$LOCAL_AWS_SQS_DIR"
    cp "$LOCAL_AWS_SQS_SRC/package.json" "$LOCAL_AWS_SQS_SRC/package-lock.json" "$LOCAL_AWS_SQS_DIR/"
    (cd "$LOCAL_AWS_SQS_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "could not install local-aws-sqs $LOCAL_AWS_SQS_VERSION (npm ci in $LOCAL_AWS_SQS_DIR)"
    "$LOCAL_AWS_SQS_NODE" --version | grep -q '^v20\.' || die "the npm package node did not provide Node 20 at $LOCAL_AWS_SQS_NODE"
  fi
  cp "$LOCAL_AWS_SQS_SRC/server.mjs" "$LOCAL_AWS_SQS_DIR/server.mjs"
}

# The SQS server the stack runs: fauxqs (the default) or local-aws-sqs.
install_sqs() {
  case "$SQS_IMPL" in
    fauxqs) install_fauxqs ;;
    local-aws-sqs) install_local_aws_sqs ;;
    *) die "KEYMIGRATE_SQS=$SQS_IMPL: want fauxqs or local-aws-sqs" ;;
  esac
}

# PgBouncer is installed with apt-get (as root, or with passwordless sudo). On
# a developer's machine where that is not possible the stack runs without it
# and the tests through it skip; under CI it is an error.
install_pgbouncer() {
  if command -v pgbouncer >/dev/null; then return; fi
  local sudo=(); ((EUID == 0)) || sudo=(sudo -n)
  if ! command -v apt-get >/dev/null || ! "${sudo[@]}" true 2>/dev/null; then
    [[ -n "${CI:-}" ]] && die "PgBouncer is needed (the fleet's tests run through it): install pgbouncer $PGBOUNCER_DEB_VERSION"
    log "PgBouncer is not installed and apt-get cannot run here: the tests through it will skip (install pgbouncer $PGBOUNCER_DEB_VERSION)"
    return
  fi
  log "installing PgBouncer $PGBOUNCER_DEB_VERSION from Debian's packages"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "pgbouncer=$PGBOUNCER_DEB_VERSION" </dev/null \
    || die "could not install pgbouncer=$PGBOUNCER_DEB_VERSION (set KEYMIGRATE_PGBOUNCER_DEB_VERSION to the version apt-cache policy pgbouncer offers)"
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

start_local_aws_sqs() {
  local pid="$STATE/local-aws-sqs.pid" logf="$STATE/local-aws-sqs.log"
  local url="http://127.0.0.1:$LOCAL_AWS_SQS_PORT/"
  if alive "$pid" && http_up "$url"; then return; fi
  if http_up "$url"; then die "port $LOCAL_AWS_SQS_PORT is taken by another program; set KEYMIGRATE_LOCAL_AWS_SQS_PORT"; fi
  log "starting local-aws-sqs on 127.0.0.1:$LOCAL_AWS_SQS_PORT (in memory)"
  PORT="$LOCAL_AWS_SQS_PORT" NODE_NO_WARNINGS=1 nohup "$LOCAL_AWS_SQS_NODE" "$LOCAL_AWS_SQS_DIR/server.mjs" >"$logf" 2>&1 </dev/null &
  echo $! >"$pid"
  wait_http local-aws-sqs "$url" "$pid" "$logf"
}

start_selected_sqs() {
  case "$SQS_IMPL" in
    fauxqs) start_sqs ;;
    local-aws-sqs) start_local_aws_sqs ;;
    *) die "KEYMIGRATE_SQS=$SQS_IMPL: want fauxqs or local-aws-sqs" ;;
  esac
}

sqs_port() { if [[ "$SQS_IMPL" == local-aws-sqs ]]; then echo "$LOCAL_AWS_SQS_PORT"; else echo "$SQS_PORT"; fi; }

start_pgbouncer() {
  command -v pgbouncer >/dev/null || return 0
  # Transaction pooling, as a fleet would use it. Every server connection runs
  # connect_query: the worker's lock_timeout and statement_timeout (its
  # defaults), which PgBouncer 1.18 cannot take from the client's startup
  # packet. The pid and log are in $STATE/pgbouncer, owned by the user it runs
  # as (PgBouncer refuses to run as root).
  local dir="$STATE/pgbouncer" pg_host pg_port
  # Its log is its stderr, written by this shell: the user it switches to
  # needs no access to $STATE (a clone under /root, say).
  local pid="$dir/pgbouncer.pid" logf="$dir/pgbouncer.log"
  if alive "$pid" && pg_isready -q -h 127.0.0.1 -p "$PGBOUNCER_PORT" -d test 2>/dev/null; then return; fi
  pg_host="$(sed -E 's|^[a-z]+://([^@/]*@)?([^:/?]+).*|\2|' <<<"$PG_ADMIN_URL")"
  pg_port="$(sed -nE 's|^[a-z]+://([^@/]*@)?[^:/?]+:([0-9]+).*|\2|p' <<<"$PG_ADMIN_URL")"
  mkdir -p "$dir"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$pg_host port=${pg_port:-5432} connect_query='SET lock_timeout = 5000; SET statement_timeout = 30000'
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
max_client_conn = 4000
default_pool_size = 20
max_db_connections = 20
; every test has its own database, hence its own pool: give idle server
; connections back quickly, or the pools of finished tests fill the server
server_idle_timeout = 5
server_reset_query =
admin_users = postgres
stats_users = postgres
INI
  echo '"postgres" ""' >"$dir/users.txt"
  local as=()
  if ((EUID == 0)); then as=(-u postgres); fi
  log "starting PgBouncer on 127.0.0.1:$PGBOUNCER_PORT (transaction pooling, in front of $pg_host:${pg_port:-5432})"
  nohup pgbouncer "${as[@]}" "$dir/pgbouncer.ini" >>"$logf" 2>&1 </dev/null &
  echo $! >"$pid"
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p "$PGBOUNCER_PORT" -d test 2>/dev/null && return
    alive "$pid" || { tail -n 20 "$logf" >&2 || true; die "PgBouncer exited during start-up; its log is $logf"; }
    sleep 0.2
  done
  die "PgBouncer did not answer on 127.0.0.1:$PGBOUNCER_PORT within 10s; its log is $logf"
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
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$(sqs_port)
export KEYMIGRATE_SQS=$SQS_IMPL
export KEYMIGRATE_TEST_DATABASE_URL='$PG_ADMIN_URL'
export DATABASE_URL='$DEMO_DATABASE_URL'
export KEYMIGRATE_BUCKET=\${KEYMIGRATE_BUCKET:-keymigrate-demo}
ENV
  if command -v pgbouncer >/dev/null; then
    echo "export KEYMIGRATE_TEST_PGBOUNCER_URL='postgres://postgres@127.0.0.1:$PGBOUNCER_PORT/test?sslmode=disable'"
  fi
}

case "${1:-}" in
  install) install_s3; install_sqs; install_pgbouncer ;;
  up)
    mkdir -p "$STATE"
    install_s3; install_sqs; install_pgbouncer
    ensure_postgres; start_selected_s3; start_selected_sqs; start_pgbouncer
    log "up: S3 ($S3_IMPL) http://127.0.0.1:$(s3_port), SQS ($SQS_IMPL) http://127.0.0.1:$(sqs_port), Postgres $PG_ADMIN_URL, PgBouncer 127.0.0.1:$PGBOUNCER_PORT"
    ;;
  down) stop_one pgbouncer "$STATE/pgbouncer/pgbouncer.pid"; stop_one fauxqs "$STATE/fauxqs.pid"; stop_one local-aws-sqs "$STATE/local-aws-sqs.pid"; stop_one versitygw "$STATE/versitygw.pid"; stop_one minio "$STATE/minio.pid" ;;
  status)
    for s in versitygw minio fauxqs local-aws-sqs pgbouncer/pgbouncer; do
      if alive "$STATE/$s.pid"; then echo "${s#*/}: running (pid $(cat "$STATE/$s.pid"))"; else echo "${s#*/}: stopped"; fi
    done
    if command -v pg_isready >/dev/null && pg_isready -q -d "$PG_ADMIN_URL"; then echo "postgres: up"; else echo "postgres: down"; fi
    ;;
  env) print_env ;;
  s5cmd) install_s5cmd; echo "$S5CMD" ;;
  *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
