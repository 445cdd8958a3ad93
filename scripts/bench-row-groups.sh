#!/usr/bin/env bash
# Peak RSS and wall time of `pg2bq export` (release, 1 partition) by --row-group-size, on the
# events-like table of bench-export.sh. Usage: scripts/bench-row-groups.sh [ROWS]  (default 1000000)
# stdout: a Markdown table.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
ROWS=${1:-1000000}

"$REPO/scripts/system-deps.sh"
cargo build --release --locked --quiet
WORK=$(mktemp -d)
cleanup() { "$REPO/scripts/pg-down.sh" || true; rm -rf "$WORK"; }
trap cleanup EXIT
eval "$("$REPO/scripts/pg-up.sh")"
psql -X -q -v ON_ERROR_STOP=1 -v rows="$ROWS" -f scripts/bench_events.sql "$PG2BQ_TEST_PG_URL" >&2
psql -X -q "$PG2BQ_TEST_PG_URL" -c "VACUUM ANALYZE bench_events" >&2

echo "| --row-group-size | seconds | peak RSS (MB) |"
echo "|---:|---:|---:|"
for size in 32MiB 64MiB 128MiB 512MiB; do
  rm -rf "$WORK/out"
  /usr/bin/time -f "%e %M" -o "$WORK/time" "${CARGO_TARGET_DIR:-target}/release/pg2bq" export --source "$PG2BQ_TEST_PG_URL" \
    --dest "$WORK/out" --table public.bench_events --partitions 1 --row-group-size "$size" --progress off >/dev/null 2>&1
  read -r seconds rss_kb <"$WORK/time"
  echo "| $size | $seconds | $((rss_kb / 1024)) |"
done
