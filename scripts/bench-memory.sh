#!/usr/bin/env bash
# Memory bound of `pg2bq export` (release build): peak RSS must stay within 256 MB whatever the
# speed of the sink. For each row count (a fresh scripts/bench_events.sql table) and each
# --partitions N (run with --jobs N, so N units at once), three runs:
#   quiet       to a local directory, nothing else running;
#   contended   the same with two busy loops (`sh -c 'while :; do :; done'`) on the CPU;
#   throttled   to gs:// on fake-gcs-server through scripts/fault_proxy.py, every upload PUT
#               delayed (PG2BQ_BENCH_UPLOAD_DELAY_MS, default 400 ms per 8 MiB chunk), so the
#               sink is slower than the reader and backpressure has to hold memory.
# Wall time and peak RSS come from GNU time (the pg2bq process only). Services are its own
# (a state directory under a temp dir), started and stopped here.
# Usage: scripts/bench-memory.sh [ROWS ...]       (default: 1000000 5000000)
#   PG2BQ_BENCH_PARTITIONS="1 2 4"  PG2BQ_BENCH_MODES="quiet contended throttled"
# stdout: a Markdown table. Exit 1 if any run's peak RSS exceeds 256 MB (or a run fails).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
(($#)) || set -- 1000000 5000000
PARTITIONS=${PG2BQ_BENCH_PARTITIONS:-1 2 4}
MODES=${PG2BQ_BENCH_MODES:-quiet contended throttled}
DELAY_MS=${PG2BQ_BENCH_UPLOAD_DELAY_MS:-400}
LIMIT_MB=256

"$REPO/scripts/system-deps.sh"
PG2BQ=$(release_pg2bq)

WORK=$(mktemp -d)
export PG2BQ_STATE_DIR=$WORK/state
BUSY_PIDS=()
PROXY_PID=
stop_busy() {
  local pid
  for pid in "${BUSY_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  BUSY_PIDS=()
}
cleanup() {
  stop_busy
  [[ -z $PROXY_PID ]] || kill "$PROXY_PID" 2>/dev/null || true
  "$REPO/scripts/gcs-down.sh" || true
  "$REPO/scripts/pg-down.sh" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
eval "$("$REPO/scripts/pg-up.sh")"
eval "$("$REPO/scripts/gcs-up.sh")"
URL=$PG2BQ_TEST_PG_URL
GCS=$STORAGE_EMULATOR_HOST

PROXY_PORT=$(free_port)
python3 "$REPO/scripts/fault_proxy.py" --gcs-upstream "$GCS" --gcs-port "$PROXY_PORT" </dev/null >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PROXY=http://127.0.0.1:$PROXY_PORT
for _ in $(seq 100); do curl -fsS -o /dev/null "$PROXY/__faults" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null -H 'Content-Type: application/json' "$PROXY/__faults" \
  -d "{\"rules\": [{\"upstream\": \"gcs\", \"method\": \"PUT\", \"path\": \"^/upload/\", \"fraction\": 1.0,
       \"faults\": [{\"delay_ms\": $DELAY_MS}]}]}"

# run ROWS PARTITIONS MODE: one export under GNU time; prints a JSON line.
run() {
  local rows=$1 partitions=$2 mode=$3 dest=$WORK/out
  local -a env=()
  case $mode in
    contended)
      sh -c 'while :; do :; done' & BUSY_PIDS+=($!)
      sh -c 'while :; do :; done' & BUSY_PIDS+=($!) ;;
    throttled)
      dest=gs://$PG2BQ_TEST_GCS_BUCKET/bench-$rows-$partitions
      env=(STORAGE_EMULATOR_HOST="$PROXY") ;;
  esac
  log "export $rows rows, --partitions $partitions, $mode"
  rm -rf "$WORK/out"
  if ! env "${env[@]}" /usr/bin/time -v -o "$WORK/time" "$PG2BQ" export --source "$URL" --dest "$dest" \
    --table public.bench_events --partitions "$partitions" --jobs "$partitions" --run-id "r$rows-$partitions-$mode" --progress off \
    >/dev/null 2>"$WORK/stderr"; then
    stop_busy
    cat "$WORK/stderr" >&2
    die "export failed ($rows rows, --partitions $partitions, $mode)"
  fi
  stop_busy
  printf '{"rows":%d,"partitions":%d,"mode":"%s",%s}\n' "$rows" "$partitions" "$mode" "$(time_figures "$WORK/time" "$rows")"
}

results=$WORK/results.jsonl
for rows in "$@"; do
  log "creating bench_events with $rows rows"
  psql -X -q -v ON_ERROR_STOP=1 -v rows="$rows" -f scripts/bench_events.sql "$URL" >&2
  psql -X -q "$URL" -c "SELECT count(*) FROM bench_events" >/dev/null
  for partitions in $PARTITIONS; do
    for mode in $MODES; do
      run "$rows" "$partitions" "$mode" | tee -a "$results" >&2
    done
  done
done

python3 - "$results" "$LIMIT_MB" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
limit = float(sys.argv[2])
print("| rows | partitions | sink | seconds | CPU seconds | peak RSS (MB) |")
print("|---:|---:|---|---:|---:|---:|")
for r in rows:
    flag = "" if r["peak_rss_mb"] <= limit else " **over**"
    print(f"| {r['rows']:,} | {r['partitions']} | {r['mode']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['peak_rss_mb']:.0f}{flag} |")
over = [r for r in rows if r["peak_rss_mb"] > limit]
if over:
    print(f"\n{len(over)} run(s) over {limit:.0f} MB", file=sys.stderr)
    sys.exit(1)
PY
