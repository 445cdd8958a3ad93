#!/usr/bin/env bash
# Start (or reuse) the BigQuery emulator (local-bigquery via scripts/bq_emulator.py), project
# pg2bq-test, reading gs:// from the fake-gcs-server of gcs-up.sh.
# Usage: eval "$(scripts/gcs-up.sh)"; eval "$(scripts/bq-up.sh)"
#   exports BIGQUERY_EMULATOR_HOST, PG2BQ_TEST_BQ_PROJECT
# stdout: only `export ...` lines; all logs go to stderr.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROJECT=pg2bq-test
BQ_DIR=$STATE_DIR/bq
PID_FILE=$BQ_DIR/local-bigquery.pid
PORT_FILE=$BQ_DIR/port
LOGFILE=$BQ_DIR/local-bigquery.log
GCS_FILE=$BQ_DIR/storage-emulator-host
GCS=${STORAGE_EMULATOR_HOST:?run gcs-up.sh first (eval \"\$(scripts/gcs-up.sh)\")}

"$REPO/scripts/bq-install.sh" >&2
mkdir -p "$BQ_DIR"

running() {
  [[ -f $PID_FILE && -f $PORT_FILE && $(cat "$GCS_FILE" 2>/dev/null) == "$GCS" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null &&
    curl -fsS -o /dev/null "http://127.0.0.1:$(cat "$PORT_FILE")/bigquery/v2/projects/$PROJECT/datasets" 2>/dev/null
}

if running; then
  PORT=$(cat "$PORT_FILE")
  log "reusing local-bigquery pid $(cat "$PID_FILE") on port $PORT"
else
  if [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    log "emulator pid $(cat "$PID_FILE") not usable (other GCS host or not answering): restarting"
    "$REPO/scripts/bq-down.sh"
    mkdir -p "$BQ_DIR"
  fi
  PORT=$(free_port)
  GRPC_PORT=$(free_port)
  [[ $GRPC_PORT != "$PORT" ]] || GRPC_PORT=$(free_port)
  log "starting local-bigquery on 127.0.0.1:$PORT (gRPC $GRPC_PORT, GCS $GCS, log: $LOGFILE)"
  HOME=$BQ_HOME STORAGE_EMULATOR_HOST=$GCS "$BQ_VENV/bin/python" "$REPO/scripts/bq_emulator.py" \
    serve --host 127.0.0.1 --port "$PORT" --grpc-port "$GRPC_PORT" --project "$PROJECT" \
    --data-dir "$BQ_DIR/data" </dev/null >"$LOGFILE" 2>&1 &
  echo $! >"$PID_FILE"
  echo "$PORT" >"$PORT_FILE"
  echo "$GCS" >"$GCS_FILE"

  wait_ready "local-bigquery on port $PORT" "$PID_FILE" "$LOGFILE" 60 running
  log "local-bigquery ready after ${SECONDS}s"
fi

echo "export BIGQUERY_EMULATOR_HOST=http://127.0.0.1:$PORT"
echo "export PG2BQ_TEST_BQ_PROJECT=$PROJECT"
