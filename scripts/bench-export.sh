#!/usr/bin/env bash
# Whole-run export benchmark against peers, all on this machine in one run: for each row
# count, a fresh events-like table (scripts/bench_events.sql), then
#   pg2bq export (release build; defaults: units sized for --jobs = cores; and --jobs 1 with one
#   unit) to a local directory,
#   COPY … TO STDOUT (FORMAT binary) into /dev/null (the server's floor),
#   connectorx-python + pyarrow writing zstd Parquet (1 and 2 partitions),
#   adbc-driver-postgresql streaming into pyarrow's ParquetWriter (zstd),
#   DuckDB's postgres extension: COPY (SELECT …) TO parquet (zstd)   (scripts/bench-peers.sh).
# Wall time and peak RSS come from GNU time (client process only, not the Postgres server).
# Every tool runs PG2BQ_BENCH_ROUNDS times (default 3), the tools taking turns round by round so
# a drift of the machine's speed touches them alike; the table gives each tool's median wall
# time with the fastest and slowest round, and its largest peak RSS.
# PG2BQ_BENCH_BASELINE=BINARY also times another pg2bq build (e.g. one built at an earlier commit)
# with the same defaults, as pg2bq_baseline: what a change costs, in the same rounds.
# Usage: [PG2BQ_BENCH_ROUNDS=N] [PG2BQ_BENCH_BASELINE=BINARY] scripts/bench-export.sh [ROWS ...]
#        (default ROWS: 1000000)
# stdout: a Markdown table (docs/benchmarks.md holds the last one published).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
(($#)) || set -- 1000000
ROUNDS=${PG2BQ_BENCH_ROUNDS:-3}
BASELINE=${PG2BQ_BENCH_BASELINE:-}
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
  log "running $tool ($rows rows)"
  /usr/bin/time -v -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; die "$tool failed"; }
  printf '{"tool":"%s","rows":%d,%s}\n' "$tool" "$rows" "$(time_figures "$WORK/time" "$rows")"
}

results=$WORK/results.jsonl
for rows in "$@"; do
  log "creating bench_events with $rows rows"
  psql -X -q -v ON_ERROR_STOP=1 -v rows="$rows" -f scripts/bench_events.sql "$URL" >&2
  psql -X -q "$URL" -c "VACUUM ANALYZE bench_events" >&2
  # Warm the cache so every tool reads from memory.
  psql -X -q "$URL" -c "SELECT count(*) FROM bench_events" >/dev/null
  for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round of $ROUNDS"
    rm -rf "$WORK/out"
    measure pg2bq_defaults "$rows" "$PG2BQ" export --source "$URL" --dest "$WORK/out" \
      --table public.bench_events --progress off | tee -a "$results"
    if [[ -n $BASELINE ]]; then
      rm -rf "$WORK/out"
      measure pg2bq_baseline "$rows" "$BASELINE" export --source "$URL" --dest "$WORK/out" \
        --table public.bench_events --progress off | tee -a "$results"
    fi
    rm -rf "$WORK/out"
    measure pg2bq_jobs1_p1 "$rows" "$PG2BQ" export --source "$URL" --dest "$WORK/out" \
      --table public.bench_events --jobs 1 --partitions 1 --progress off | tee -a "$results"
    rm -rf "$WORK/out"
    "$REPO/scripts/bench-peers.sh" bench_events "$WORK/peers" | tee -a "$results"
    rm -rf "$WORK/peers"
  done
done

"$VENV/bin/python" - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
tools = {}
for r in runs:
    tools.setdefault((r["rows"], r["tool"]), []).append(r)
def median(rows, tool):
    return statistics.median(r["seconds"] for r in tools[(rows, tool)])
print("| rows | tool | median s (min–max) | rows/s | client CPU s | peak RSS (MB) | vs COPY floor | vs adbc + pyarrow |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
for (rows, tool), same in tools.items():
    seconds = median(rows, tool)
    spread = f"{min(r['seconds'] for r in same):.2f}–{max(r['seconds'] for r in same):.2f}"
    rss = max(r["peak_rss_mb"] for r in same)
    cpu = statistics.median(r["cpu_seconds"] for r in same)
    print(f"| {rows:,} | {tool} | {seconds:.2f} ({spread}) | {int(rows / seconds):,} | {cpu:.2f} | {rss:.0f} "
          f"| {seconds / median(rows, 'copy_binary_psql'):.2f}× | {seconds / median(rows, 'adbc_pyarrow'):.2f}× |")
PY
