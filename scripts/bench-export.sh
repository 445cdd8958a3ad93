#!/usr/bin/env bash
# Whole-run export benchmark against peers, all on this machine in one run: for each row
# count and each table shape, a fresh table (events: scripts/bench_events.sql; narrow, long_text,
# jsonb, wide, arrays: scripts/bench_shapes.sql), then
#   pg2bq export (release build; defaults: units sized for --jobs = cores; and --jobs 1 with one
#   unit) to a local directory,
#   COPY … TO STDOUT (FORMAT binary) into /dev/null (the server's floor),
#   connectorx-python + pyarrow writing zstd Parquet (1 and 2 partitions),
#   adbc-driver-postgresql streaming into pyarrow's ParquetWriter (zstd),
#   DuckDB's postgres extension: COPY (SELECT …) TO parquet (zstd)   (scripts/bench-peers.sh).
# Wall time and peak RSS come from GNU time (client process only, not the Postgres server). Every
# output is checked against the table after its run (scripts/bench_check_output.py: rows, sum and
# sum of squares of `id`): pg2bq failing it stops the script, a peer failing it is listed as failed.
# Every tool runs PG2BQ_BENCH_ROUNDS times (default 3), the tools taking turns round by round so
# a drift of the machine's speed touches them alike; the table gives each tool's median wall
# time with the fastest and slowest round, and its largest peak RSS.
# PG2BQ_BENCH_BASELINE=BINARY also times another pg2bq build (e.g. one built at an earlier commit)
# with the same defaults, as pg2bq_baseline: what a change costs, in the same rounds.
# A peer that fails on a shape (a type it cannot read) is listed as failed; the others go on.
# Usage: [PG2BQ_BENCH_ROUNDS=N] [PG2BQ_BENCH_BASELINE=BINARY] [PG2BQ_BENCH_SHAPES="events wide"]
#        scripts/bench-export.sh [ROWS ...]   (default ROWS: 1000000; SHAPES: all six)
# stdout: a Markdown table (docs/benchmarks.md holds the last one published).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
(($#)) || set -- 1000000
ROUNDS=${PG2BQ_BENCH_ROUNDS:-3}
BASELINE=${PG2BQ_BENCH_BASELINE:-}
read -r -a SHAPES <<<"${PG2BQ_BENCH_SHAPES:-events narrow long_text jsonb wide arrays}"
for shape in "${SHAPES[@]}"; do
  [[ " events narrow long_text jsonb wide arrays " == *" $shape "* ]] ||
    die "PG2BQ_BENCH_SHAPES: unknown shape $shape (events, narrow, long_text, jsonb, wide, arrays)"
done
[[ -z $BASELINE || -x $BASELINE ]] || die "PG2BQ_BENCH_BASELINE=$BASELINE is not an executable pg2bq binary"

"$REPO/scripts/system-deps.sh"
"$REPO/scripts/bench-tools-install.sh" >&2
PG2BQ=$(release_pg2bq)

cleanup() { "$REPO/scripts/pg-down.sh" || true; rm -rf "$WORK"; }
WORK=$(mktemp -d)
trap cleanup EXIT
eval "$("$REPO/scripts/pg-up.sh")"
URL=$PG2BQ_TEST_PG_URL

# measure TOOL ROWS CMD...: JSON line with the wall seconds, CPU seconds and peak RSS of CMD.
measure() {
  local tool=$1 rows=$2
  shift 2
  log "running $tool ($rows rows, $shape)"
  /usr/bin/time -v -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; die "$tool failed"; }
  printf '{"tool":"%s","rows":%d,%s}\n' "$tool" "$rows" "$(time_figures "$WORK/time" "$rows")"
}

# create_table SHAPE ROWS: the shape's table, fresh, analyzed and read once into the cache.
create_table() {
  log "creating bench_$1 with $2 rows"
  if [[ $1 == events ]]; then
    psql -X -q -v ON_ERROR_STOP=1 -v rows="$2" -f scripts/bench_events.sql "$URL" >&2
  else
    psql -X -q -v ON_ERROR_STOP=1 -v rows="$2" -v shape="$1" -f scripts/bench_shapes.sql "$URL" >&2
  fi
  psql -X -q "$URL" -c "SELECT count(*) FROM bench_$1" >/dev/null
}

# pg2bq_export TOOL BINARY [FLAG ...]: one timed export of the shape's table.
pg2bq_export() {
  local tool=$1 binary=$2
  shift 2
  rm -rf "$WORK/out"
  measure "$tool" "$rows" "$binary" export --source "$URL" --dest "$WORK/out" --table "public.bench_$shape" \
    --progress off "$@" | shaped
  "$VENV/bin/python" scripts/bench_check_output.py --url "$URL" --table "bench_$shape" --tool "$tool" "$WORK/out" ||
    die "$tool exported bench_$shape wrong (above)"
}

# shaped: each JSON line with the shape it was measured on.
shaped() { sed "s/^{/{\"shape\":\"$shape\",/"; }

results=$WORK/results.jsonl
for rows in "$@"; do
  for shape in "${SHAPES[@]}"; do
    create_table "$shape" "$rows"
    for ((round = 1; round <= ROUNDS; round++)); do
      log "round $round of $ROUNDS ($shape)"
      pg2bq_export pg2bq_defaults "$PG2BQ" | tee -a "$results"
      [[ -z $BASELINE ]] || pg2bq_export pg2bq_baseline "$BASELINE" | tee -a "$results"
      pg2bq_export pg2bq_jobs1_p1 "$PG2BQ" --jobs 1 --partitions 1 | tee -a "$results"
      "$REPO/scripts/bench-peers.sh" "bench_$shape" "$WORK/peers" | shaped | tee -a "$results"
      rm -rf "$WORK/peers" "$WORK/out"
    done
    psql -X -q "$URL" -c "DROP TABLE bench_$shape"
  done
done

"$VENV/bin/python" - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
groups = {}
for r in runs:
    groups.setdefault((r["shape"], r["rows"], r["tool"]), []).append(r)
def median(key, figure="seconds"):
    done = [r[figure] for r in groups.get(key, []) if not r.get("failed")]
    return statistics.median(done) if done else None
def ratio(seconds, key):
    base = median(key)
    return f"{seconds / base:.2f}×" if base else "–"
print("| shape | rows | tool | median s (min–max) | rows/s | client CPU s | peak RSS (MB) | vs COPY floor | vs adbc + pyarrow |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
for (shape, rows, tool), same in groups.items():
    ok = [r for r in same if not r.get("failed")]
    if not ok:
        print(f"| {shape} | {rows:,} | {tool} | failed | | | | | |")
        continue
    seconds = median((shape, rows, tool))
    spread = f"{min(r['seconds'] for r in ok):.2f}–{max(r['seconds'] for r in ok):.2f}"
    failed = f" ({len(same) - len(ok)} failed)" if len(ok) < len(same) else ""
    print(f"| {shape} | {rows:,} | {tool} | {seconds:.2f} ({spread}){failed} | {int(rows / seconds):,} "
          f"| {median((shape, rows, tool), 'cpu_seconds'):.2f} | {max(r['peak_rss_mb'] for r in ok):.0f} "
          f"| {ratio(seconds, (shape, rows, 'copy_binary_psql'))} | {ratio(seconds, (shape, rows, 'adbc_pyarrow'))} |")
PY
