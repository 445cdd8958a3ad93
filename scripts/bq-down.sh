#!/usr/bin/env bash
# Stop the BigQuery emulator started by bq-up.sh and delete its state.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BQ_DIR=$STATE_DIR/bq
PID_FILE=$BQ_DIR/local-bigquery.pid
if [[ -f $PID_FILE ]]; then
  pid=$(cat "$PID_FILE")
  if kill "$pid" 2>/dev/null; then
    # Wait up to 10 s, then force.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped local-bigquery pid $pid"
  fi
fi
rm -rf "$BQ_DIR"
rmdir "$STATE_DIR" 2>/dev/null || true
