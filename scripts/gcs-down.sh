#!/usr/bin/env bash
# Stop the fake-gcs-server started by gcs-up.sh and delete its state.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GCS_DIR=$STATE_DIR/gcs
PID_FILE=$GCS_DIR/fake-gcs-server.pid
if [[ -f $PID_FILE ]]; then
  pid=$(cat "$PID_FILE")
  if kill "$pid" 2>/dev/null; then
    # Wait up to 5 s, then force.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped fake-gcs-server pid $pid"
  fi
fi
rm -rf "$GCS_DIR"
rmdir "$STATE_DIR" 2>/dev/null || true

