#!/usr/bin/env bash
# Forget the demo: drop its database and delete its queues and bucket contents,
# so that the next `make demo` seeds and migrates from scratch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
deploy/local/stack.sh up
eval "$(deploy/local/stack.sh env)"
db="$(printf '%s' "$DATABASE_URL" | sed -E 's#^[a-z]+://[^/]*/([^?]*).*#\1#')"
psql "$KEYMIGRATE_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
go build -o bin/ ./cmd/...
bin/migratectl dev-reset --queue-name keymigrate-demo --dlq-name keymigrate-demo-dlq --yes
echo "demo reset: database $db dropped, bucket $KEYMIGRATE_BUCKET emptied, demo queues deleted"
