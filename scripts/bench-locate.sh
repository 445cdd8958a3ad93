#!/usr/bin/env bash
# Locating differing rows (docs/validate.md#locating-the-rows-that-differ) on the events-like
# bench table (scripts/bench_events.sql, default 1,000,000 rows, without its jsonb column) on the emulators: export, load,
# then `validate --locate-limit 0` (every check, no location: the baseline), then with 1 and
# with 100 rows' `title` changed in BigQuery, `validate` with location. Per run: wall time,
# client CPU and peak RSS (GNU time, the pg2bq process only), and from the JSON report the
# levels, queries, BigQuery bytes processed, the seconds waiting for BigQuery and the seconds
# reading the run's files (the snapshot side), and the rows located.
# The BigQuery emulator is not BigQuery: its seconds say little about BigQuery's; the files'
# seconds are the client's own cost.
# Usage: [PG2BQ_BENCH_BIN=path/to/pg2bq] [PG2BQ_BENCH_MANIFEST=<an earlier run's manifest>] \
#          scripts/bench-locate.sh [ROWS]
#   (default: the release build; services started by the *-up.sh scripts, left running)
# stdout: a Markdown table (docs/benchmarks.md holds the last one published).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
ROWS=${1:-1000000}
PG2BQ=${PG2BQ_BENCH_BIN:-$(release_pg2bq)}

eval "$("$REPO/scripts/pg-up.sh")"
eval "$("$REPO/scripts/gcs-up.sh")"
export STORAGE_EMULATOR_HOST
eval "$("$REPO/scripts/bq-up.sh")"
export BIGQUERY_EMULATOR_HOST
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

DATASET=bench_locate_$(date -u +%s)
MANIFEST=${PG2BQ_BENCH_MANIFEST:-}
if [[ -z $MANIFEST ]]; then
  log "creating bench_events ($ROWS rows)"
  psql -q -v ON_ERROR_STOP=1 -v rows="$ROWS" -f scripts/bench_events.sql "$PG2BQ_TEST_PG_URL" >&2
  # Without its jsonb column: the emulator parses JSON a value at a time in Python (load checks
  # every value: minutes for 1M rows), and location does not compare JSON columns anyway.
  psql -q -v ON_ERROR_STOP=1 -c "ALTER TABLE bench_events DROP COLUMN metadata" "$PG2BQ_TEST_PG_URL" >&2
  RUN=bench-locate-$(date -u +%Y%m%dT%H%M%SZ)
  MANIFEST=gs://$PG2BQ_TEST_GCS_BUCKET/bench-locate/$RUN/manifest.json
  log "exporting"
  "$PG2BQ" export --source "$PG2BQ_TEST_PG_URL" --dest "gs://$PG2BQ_TEST_GCS_BUCKET/bench-locate" --run-id "$RUN" \
    --table public.bench_events --progress off >&2
fi
log "loading $MANIFEST into $DATASET"
"$PG2BQ" load --manifest "$MANIFEST" --project "$PG2BQ_TEST_BQ_PROJECT" --dataset "$DATASET" --create-dataset --progress off >&2

bq_sql() { "$BQ_VENV/bin/python" scripts/bq_query.py "$PG2BQ_TEST_BQ_PROJECT" "$1" >/dev/null; }

# validate LABEL [ARGS...]: one Markdown row for a validate run.
validate() {
  local label=$1
  shift
  log "validate: $label"
  /usr/bin/time -v -o "$WORK/time" "$PG2BQ" validate --manifest "$MANIFEST" --project "$PG2BQ_TEST_BQ_PROJECT" \
    --dataset "$DATASET" --progress off --json "$@" >"$WORK/report.json" 2>"$WORK/stderr" || true
  [[ -s $WORK/report.json ]] || { cat "$WORK/stderr" >&2; die "validate wrote no report"; }
  local figures
  figures=$(time_figures "$WORK/time" "$ROWS")
  python3 - "$label" "{$figures}" "$WORK/report.json" <<'EOF'
import json, sys
label, figures, report = sys.argv[1], json.loads(sys.argv[2]), json.load(open(sys.argv[3]))
table = report["tables"][0]
l = table.get("located") or {}
located = "-" if not l else f"{l['missing']} missing, {l['only_in_bigquery']} extra, {l['differing']} differing" + ("" if l["complete"] else " (lower bounds)")
cells = [label, f"{figures['seconds']:.1f}", f"{figures['cpu_seconds']:.2f}", f"{figures['peak_rss_mb']:.0f}",
         str(l.get("levels", "-")), str(l.get("queries", "-")), str(l.get("bytes_processed", "-")),
         f"{l['bigquery_seconds']:.1f}" if l else "-", f"{l['files_seconds']:.2f}" if l else "-", located]
print("| " + " | ".join(cells) + " |")
EOF
}

TABLE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tables"][0]["bq_table"])' \
  <("$PG2BQ" validate --manifest "$MANIFEST" --project "$PG2BQ_TEST_BQ_PROJECT" --dataset "$DATASET" --dry-run --json --progress off))
T="\`$PG2BQ_TEST_BQ_PROJECT.$DATASET.$TABLE\`"
echo "| run | wall s | client CPU s | peak RSS MB | levels | queries | BigQuery bytes | s in BigQuery | s reading files | located |"
echo "|---|---|---|---|---|---|---|---|---|---|"
bq_sql "UPDATE $T SET title = CONCAT(title, '!') WHERE MOD(id, $ROWS) = 0"
validate "1 row differs, --locate-limit 0 (no location)" --locate-limit 0
validate "1 row differs"
bq_sql "UPDATE $T SET title = CONCAT(title, '!') WHERE MOD(id, $((ROWS / 100))) = 0"
validate "100 rows differ"
