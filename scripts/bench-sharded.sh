#!/usr/bin/env bash
# What sharding costs on one machine: the same table exported by one process (--jobs 2) and by a
# coordinator with 2 workers of --jobs 1 each (Cloud Run-style task variables), same units
# (--partitions 4), to a local directory. On one machine the workers share its cores, so this
# measures the coordination (plan.json, unit records, the 2 s poll, the merge), not a speed-up.
# Wall time is the coordinator's, from its start to its commit; CPU adds up every process;
# peak RSS is per process (the coordinator, and the largest worker), from GNU time. Rounds
# alternate the two (default 3).
# Usage: [PG2BQ_BENCH_ROUNDS=N] scripts/bench-sharded.sh [ROWS]      (default: 1000000)
# stdout: a Markdown table (docs/benchmarks.md holds the last one published).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
ROWS=${1:-1000000}
ROUNDS=${PG2BQ_BENCH_ROUNDS:-3}

"$REPO/scripts/system-deps.sh"
PG2BQ=$(release_pg2bq)

cleanup() { "$REPO/scripts/pg-down.sh" || true; rm -rf "$WORK"; }
WORK=$(mktemp -d)
trap cleanup EXIT
eval "$("$REPO/scripts/pg-up.sh")"
export PG2BQ_SOURCE=$PG2BQ_TEST_PG_URL

log "creating bench_events with $ROWS rows"
psql -X -q -v ON_ERROR_STOP=1 -v rows="$ROWS" -f scripts/bench_events.sql "$PG2BQ_SOURCE" >&2
psql -X -q "$PG2BQ_SOURCE" -c "VACUUM ANALYZE bench_events" >&2
psql -X -q "$PG2BQ_SOURCE" -c "SELECT count(*) FROM bench_events" >/dev/null

EXPORT=(export --table public.bench_events --partitions 4 --progress off)
results=$WORK/results.jsonl
for ((round = 1; round <= ROUNDS; round++)); do
  log "round $round of $ROUNDS: one process"
  rm -rf "$WORK/out"
  /usr/bin/time -v -o "$WORK/single.time" "$PG2BQ" "${EXPORT[@]}" --dest "$WORK/out" --jobs 2 >/dev/null 2>"$WORK/single.log" ||
    { cat "$WORK/single.log" >&2; die "the single-process export failed"; }
  printf '{"tool":"one process, --jobs 2",%s}\n' "$(time_figures "$WORK/single.time" "$ROWS")" | tee -a "$results"

  log "round $round of $ROUNDS: coordinator + 2 workers"
  rm -rf "$WORK/out"
  /usr/bin/time -v -o "$WORK/coordinator.time" "$PG2BQ" "${EXPORT[@]}" --dest "$WORK/out" --run-id sharded \
    --coordinate --workers 2 --jobs 1 --deadline 30m >/dev/null 2>"$WORK/coordinator.log" &
  coordinator=$!
  wait_for_plan "$WORK/coordinator.log" "$coordinator"
  workers=()
  for i in 0 1; do
    CLOUD_RUN_TASK_INDEX=$i CLOUD_RUN_TASK_COUNT=2 /usr/bin/time -v -o "$WORK/worker$i.time" \
      "$PG2BQ" work --plan "$WORK/out/sharded/plan.json" >/dev/null 2>"$WORK/worker$i.log" &
    workers+=($!)
  done
  for i in 0 1; do wait "${workers[$i]}" || { cat "$WORK/worker$i.log" >&2; die "worker $i failed"; }; done
  wait "$coordinator" || { cat "$WORK/coordinator.log" >&2; die "the coordinator failed"; }
  printf '{"tool":"coordinator + 2 workers × --jobs 1",%s}\n' "$(time_figures "$WORK/coordinator.time" "$ROWS")" | tee -a "$results"
  for i in 0 1; do
    printf '{"tool":"worker","round":%d,%s}\n' "$round" "$(time_figures "$WORK/worker$i.time" "$ROWS")" | tee -a "$results"
  done
done

"$VENV/bin/python" - "$results" "$ROWS" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
rows = int(sys.argv[2])
workers = [r for r in runs if r["tool"] == "worker"]
tools = {}
for r in runs:
    if r["tool"] != "worker":
        tools.setdefault(r["tool"], []).append(r)
print(f"| {rows:,} rows | median s (min–max) | CPU s, all processes (median) | peak RSS MB |")
print("|---|---:|---:|---:|")
for tool, same in tools.items():
    seconds = [r["seconds"] for r in same]
    rss = f"{max(r['peak_rss_mb'] for r in same):.0f}"
    cpu = [r["cpu_seconds"] for r in same]
    if tool.startswith("coordinator"):
        per_round = {}
        for w in workers:
            per_round[w["round"]] = per_round.get(w["round"], 0) + w["cpu_seconds"]
        cpu = [c + per_round[i + 1] for i, c in enumerate(cpu)]
        rss = f"coordinator {rss}, worker {max(w['peak_rss_mb'] for w in workers):.0f}"
    print(f"| {tool} | {statistics.median(seconds):.2f} ({min(seconds):.2f}–{max(seconds):.2f}) | {statistics.median(cpu):.2f} | {rss} |")
PY
