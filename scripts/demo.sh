#!/usr/bin/env bash
# The end-to-end demo on a fresh machine: starts a throwaway Postgres, fake-gcs-server and the
# BigQuery emulator, seeds the events / entity_mentions / entities sample, exports it to
# gs://pg2bq-test/demo, prints the manifest summary, loads it into BigQuery with load jobs,
# prints the row counts BigQuery sees, validate's report (every check, against the manifest and a
# sample of the source), and ends with the cutover: a merge of entity_mentions into a table the
# app created (string ids, an extra column, partitioned) that already holds live rows, validate
# naming the rows the app holds with other values, then a sharded export: a coordinator and three workers started as Cloud Run Jobs starts tasks.
# Postgres preloads TimescaleDB (built once per machine by scripts/timescaledb-install.sh, as in
# the first user's database) and events is a hypertable, exported chunk by chunk.
# Everything is stopped on exit.
# Usage: scripts/demo.sh [scale]   (default 0.1 = 200 entities, 2k events, 5k mentions)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
SCALE=${1:-0.1}

"$REPO/scripts/system-deps.sh"
"$REPO/scripts/timescaledb-install.sh"
VALIDATE_CONFIG=$(mktemp)
SHARD_LOG=$(mktemp)
cleanup() {
  rm -f "$VALIDATE_CONFIG" "$SHARD_LOG"
  jobs -p | xargs -r kill 2>/dev/null || true
  "$REPO/scripts/bq-down.sh" || true
  "$REPO/scripts/gcs-down.sh" || true
  "$REPO/scripts/pg-down.sh" --timescaledb || true
}
trap cleanup EXIT

log "building pg2bq"
cargo build --locked --quiet
PG2BQ=${CARGO_TARGET_DIR:-$REPO/target}/debug/pg2bq

eval "$("$REPO/scripts/pg-up.sh" --timescaledb)"
PG2BQ_TEST_PG_URL=$PG2BQ_TEST_TIMESCALEDB_URL
eval "$("$REPO/scripts/gcs-up.sh")"
export STORAGE_EMULATOR_HOST
eval "$("$REPO/scripts/bq-up.sh")"
export BIGQUERY_EMULATOR_HOST

log "seeding the sample (scale $SCALE)"
psql -q -v ON_ERROR_STOP=1 -v scale="$SCALE" -f tests/fixtures/sample.sql "$PG2BQ_TEST_PG_URL"

RUN_ID=demo-$(date -u +%Y%m%dT%H%M%SZ)
DEST=gs://$PG2BQ_TEST_GCS_BUCKET/demo
log "exporting to $DEST/$RUN_ID"
"$PG2BQ" export --source "$PG2BQ_TEST_PG_URL" --dest "$DEST" --run-id "$RUN_ID" \
  --table public.entities --table public.events --table public.entity_mentions --progress on

log "manifest summary"
curl -fsS "$STORAGE_EMULATOR_HOST/storage/v1/b/$PG2BQ_TEST_GCS_BUCKET/o/demo%2F$RUN_ID%2Fmanifest.json?alt=media" |
  "$VENV/bin/python" "$REPO/scripts/manifest_summary.py"

log "loading into BigQuery ($PG2BQ_TEST_BQ_PROJECT.demo)"
"$PG2BQ" load --manifest "$DEST/$RUN_ID/manifest.json" --project "$PG2BQ_TEST_BQ_PROJECT" --dataset demo \
  --create-dataset --partition-by events.mentioned_at:DAY --cluster-by entity_mentions.entity_id

log "row counts in BigQuery"
"$BQ_VENV/bin/python" "$REPO/scripts/bq_query.py" "$PG2BQ_TEST_BQ_PROJECT" \
  "SELECT 'entities', COUNT(*) FROM demo.entities UNION ALL SELECT 'events', COUNT(*) FROM demo.events
   UNION ALL SELECT 'entity_mentions', COUNT(*) FROM demo.entity_mentions" |
  "$VENV/bin/python" -c 'import json, sys; [print(f"  {t:<16} {n:>8} rows") for t, n in json.load(sys.stdin)]'

log "validating the BigQuery tables against the manifest (and 10 random rows per table against Postgres)"
cat >"$VALIDATE_CONFIG" <<'TOML'
[[denormalized]]
table = "public.entity_mentions"
column = "mentioned_at"
via = "event_id"
references = "public.events.mentioned_at"

[[probes]]
name = "recent events for a date range"
sql = "SELECT COUNT(*) FROM `{project}.{dataset}.events` WHERE mentioned_at BETWEEN TIMESTAMP '2024-03-01' AND TIMESTAMP '2024-04-01'"
max_seconds = 2.0
TOML
"$PG2BQ" validate --manifest "$DEST/$RUN_ID/manifest.json" --project "$PG2BQ_TEST_BQ_PROJECT" --dataset demo \
  --source "$PG2BQ_TEST_PG_URL" --config "$VALIDATE_CONFIG"

log "cutover: the app's own table demo.app_mentions (STRING id, an extra column, partitioned), 100 live rows"
bq() { "$BQ_VENV/bin/python" "$REPO/scripts/bq_query.py" "$PG2BQ_TEST_BQ_PROJECT" "$1"; }
bq "CREATE TABLE demo.app_mentions (id STRING NOT NULL OPTIONS(description=\"the app's id\"), entity_id INT64 NOT NULL,
    event_id INT64 NOT NULL, mentioned_at TIMESTAMP NOT NULL, confidence NUMERIC, ingested_by STRING)
    PARTITION BY DATE(mentioned_at) CLUSTER BY entity_id" >/dev/null
# 50 rows the app already wrote for ids inside the snapshot (3 of them with its own confidence),
# and 50 newer ones.
bq "INSERT INTO demo.app_mentions SELECT CAST(id AS STRING), entity_id, event_id, mentioned_at,
    IF(id > (SELECT MAX(id) - 3 FROM demo.entity_mentions), IFNULL(confidence, 0) + 1, confidence), 'app'
    FROM demo.entity_mentions WHERE id > (SELECT MAX(id) - 50 FROM demo.entity_mentions)
    UNION ALL SELECT CAST(1000000 + i AS STRING), 1, 1, CURRENT_TIMESTAMP(), NULL, 'app' FROM UNNEST(GENERATE_ARRAY(1, 50)) AS i" >/dev/null
MERGE_ARGS=(--manifest "$DEST/$RUN_ID/manifest.json" --project "$PG2BQ_TEST_BQ_PROJECT" --dataset demo
  --mode merge --table-map entity_mentions=app_mentions --set entity_mentions.ingested_by=pg2bq --progress off)
log "the merge plan (--dry-run): each column's conversion and the MERGE statement"
"$PG2BQ" load "${MERGE_ARGS[@]}" --dry-run | sed -n '/entity_mentions/,/finalize/p'
log "merging the snapshot by id: new ids inserted, ids the app already holds left alone"
"$PG2BQ" load "${MERGE_ARGS[@]}"
log "merging again: nothing changes"
"$PG2BQ" load "${MERGE_ARGS[@]}"
bq "SELECT COUNT(*), COUNT(DISTINCT id), COUNTIF(ingested_by = 'app'), COUNTIF(ingested_by = 'pg2bq') FROM demo.app_mentions" |
  "$VENV/bin/python" -c 'import json, sys; [print(f"  app_mentions: {n} rows, {d} distinct ids, {a} written by the app, {p} merged by pg2bq") for n, d, a, p in json.load(sys.stdin)]'

log "validating the merge: the snapshot's rows the app holds with other values are named (exit 1 expected)"
status=0
report=$("$PG2BQ" validate --manifest "$DEST/$RUN_ID/manifest.json" --project "$PG2BQ_TEST_BQ_PROJECT" \
  --dataset demo --table-map entity_mentions=app_mentions --progress off) || status=$?
grep -v '^  PASS' <<<"$report"
((status == 1)) || die "validate exited $status, expected 1 (3 of the app's rows hold other values)"

log "sharded export (docs/distributed.md): a coordinator holds one snapshot, 3 workers started as Cloud Run Jobs tasks export its units"
SHARD_RUN=$RUN_ID-sharded
PG2BQ_SOURCE=$PG2BQ_TEST_PG_URL "$PG2BQ" export --dest "$DEST" --run-id "$SHARD_RUN" \
  --table public.events --table public.entity_mentions \
  --partitions 3 --coordinate --workers 3 --jobs 1 --deadline 10m 2>"$SHARD_LOG" &
COORDINATOR=$!
wait_for_plan "$SHARD_LOG" "$COORDINATOR"
WORKERS=()
for i in 0 1 2; do
  CLOUD_RUN_TASK_INDEX=$i CLOUD_RUN_TASK_COUNT=3 CLOUD_RUN_TASK_ATTEMPT=0 PG2BQ_SOURCE=$PG2BQ_TEST_PG_URL RUST_LOG=warn \
    "$PG2BQ" work --plan "$DEST/$SHARD_RUN/plan.json" &
  WORKERS+=($!)
done
for pid in "${WORKERS[@]}"; do wait "$pid"; done
wait "$COORDINATOR" || { cat "$SHARD_LOG" >&2; die "the coordinator failed"; }
grep -E "Worker progress|Committed manifest" "$SHARD_LOG" | sed -E 's/^[^ ]+ +INFO [^ ]+ /  /'
"$PG2BQ" verify --manifest "$DEST/$SHARD_RUN/manifest.json"

log "the run's audit record (docs/audit.md): the runs under the destination, then the report of the first run"
"$PG2BQ" runs --dest "$DEST"
REPORT=$(mktemp -d)/report.html
"$PG2BQ" report --manifest "$DEST/$RUN_ID/manifest.json" --project "$PG2BQ_TEST_BQ_PROJECT" --source "$PG2BQ_TEST_PG_URL" \
  --out "$REPORT" --progress off
log "(the day that differs is today in demo.app_mentions: the app's own 50 rows, outside the snapshot)"
log "the report of run $RUN_ID, one self-contained HTML file: $REPORT"
