#!/usr/bin/env bash
# Start (or reuse) the fault-injecting proxy (scripts/fault_proxy.py) in front of the
# fake-gcs-server of gcs-up.sh and the BigQuery emulator of bq-up.sh. It passes everything
# through until a test posts rules to `/__faults` (see the script's docstring).
# Usage: eval "$(scripts/gcs-up.sh)"; eval "$(scripts/bq-up.sh)"; eval "$(scripts/faults-up.sh)"
#   exports PG2BQ_TEST_GCS_FAULT_HOST, PG2BQ_TEST_BQ_FAULT_HOST
# stdout: only `export ...` lines; all logs go to stderr.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GCS=${STORAGE_EMULATOR_HOST:?run gcs-up.sh first}
BQ=${BIGQUERY_EMULATOR_HOST:?run bq-up.sh first}
FAULTS_DIR=$STATE_DIR/faults
PID_FILE=$FAULTS_DIR/fault_proxy.pid
PORTS_FILE=$FAULTS_DIR/ports
UPSTREAMS_FILE=$FAULTS_DIR/upstreams
LOGFILE=$FAULTS_DIR/fault_proxy.log
mkdir -p "$FAULTS_DIR"

running() {
  [[ -f $PID_FILE && -f $PORTS_FILE && $(cat "$UPSTREAMS_FILE" 2>/dev/null) == "$GCS $BQ" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null && {
    read -r gcs_port bq_port <"$PORTS_FILE"
    curl -fsS -o /dev/null "http://127.0.0.1:$gcs_port/__faults" && curl -fsS -o /dev/null "http://127.0.0.1:$bq_port/__faults"
  } 2>/dev/null
}

if running; then
  log "reusing fault_proxy pid $(cat "$PID_FILE")"
else
  if [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    log "fault_proxy pid $(cat "$PID_FILE") not usable (other upstreams or not answering): restarting"
    "$REPO/scripts/faults-down.sh"
    mkdir -p "$FAULTS_DIR"
  fi
  GCS_PORT=$(free_port)
  BQ_PORT=$(free_port)
  [[ $BQ_PORT != "$GCS_PORT" ]] || BQ_PORT=$(free_port)
  log "starting fault_proxy: GCS 127.0.0.1:$GCS_PORT -> $GCS, BigQuery 127.0.0.1:$BQ_PORT -> $BQ (log: $LOGFILE)"
  python3 "$REPO/scripts/fault_proxy.py" --gcs-upstream "$GCS" --gcs-port "$GCS_PORT" --bq-upstream "$BQ" --bq-port "$BQ_PORT" \
    </dev/null >"$LOGFILE" 2>&1 &
  echo $! >"$PID_FILE"
  echo "$GCS_PORT $BQ_PORT" >"$PORTS_FILE"
  echo "$GCS $BQ" >"$UPSTREAMS_FILE"
  wait_ready "fault_proxy" "$PID_FILE" "$LOGFILE" 10 running
fi

read -r GCS_PORT BQ_PORT <"$PORTS_FILE"
echo "export PG2BQ_TEST_GCS_FAULT_HOST=http://127.0.0.1:$GCS_PORT"
echo "export PG2BQ_TEST_BQ_FAULT_HOST=http://127.0.0.1:$BQ_PORT"
