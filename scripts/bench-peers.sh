#!/usr/bin/env bash
# Peer baselines for one table, each timed with GNU time: the server's COPY BINARY floor,
# connectorx-python + pyarrow Parquet (1 and 2 partitions), adbc-driver-postgresql streaming into
# pyarrow's ParquetWriter, and DuckDB's postgres extension COPY … TO parquet (all zstd). The adbc
# and DuckDB packages come from requirements-bench.txt (scripts/bench-tools-install.sh).
# Usage: eval "$(scripts/pg-up.sh)"; scripts/bench-peers.sh TABLE OUT_DIR
# stdout: one JSON line per tool: {"tool","rows","seconds","rows_per_s","cpu_seconds","peak_rss_mb"},
# or {"tool","rows":0,"failed":true} for a tool that failed on this table or whose output differs
# from it (scripts/bench_check_output.py: rows, sum and sum of squares of `id`; on stderr).
# peak_rss_mb is the client process only (psql / python), not the Postgres server.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TABLE=${1:?usage: bench-peers.sh TABLE OUT_DIR}
OUT=${2:?usage: bench-peers.sh TABLE OUT_DIR}
URL=${PG2BQ_TEST_PG_URL:?set PG2BQ_TEST_PG_URL, e.g. eval \"\$(scripts/pg-up.sh)\"}

[[ -x /usr/bin/time ]] || install_packages time
"$REPO/scripts/bench-tools-install.sh" >&2
mkdir -p "$OUT"

# measure TOOL ROWS CMD...: run CMD (stdout to $OUT/TOOL.out) under `time -v`, print JSON.
measure() {
  local tool=$1 rows=$2
  shift 2
  log "running $tool"
  if ! /usr/bin/time -v -o "$OUT/$tool.time" "$@" >"$OUT/$tool.out"; then
    log "$tool failed on $TABLE (above); going on with the others"
    printf '{"tool":"%s","rows":0,"failed":true}\n' "$tool"
    return 0
  fi
  if [[ $rows == from-json ]]; then
    local path
    read -r rows path < <("$VENV/bin/python" -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d["rows"], d["path"])' "$OUT/$tool.out")
    if ! "$VENV/bin/python" "$REPO/scripts/bench_check_output.py" --url "$URL" --table "$TABLE" --tool "$tool" "$path"; then
      printf '{"tool":"%s","rows":0,"failed":true}\n' "$tool"
      return 0
    fi
  fi
  printf '{"tool":"%s","rows":%d,%s}\n' "$tool" "$rows" "$(time_figures "$OUT/$tool.time" "$rows")"
}

count=$(psql -X -At -v ON_ERROR_STOP=1 "$URL" -c "SELECT count(*) FROM $TABLE")

measure copy_binary_psql "$count" \
  psql -X -q -v ON_ERROR_STOP=1 "$URL" -c "COPY (SELECT * FROM $TABLE) TO STDOUT (FORMAT binary)"
rm -f "$OUT/copy_binary_psql.out" # the COPY stream itself is not kept

py=("$VENV/bin/python" "$REPO/scripts/bench_connectorx_pyarrow.py" --url "$URL" --table "$TABLE" --out-dir "$OUT")
measure connectorx_pyarrow from-json "${py[@]}"
measure connectorx_pyarrow_p2 from-json "${py[@]}" --partitions 2
measure adbc_pyarrow from-json \
  "$VENV/bin/python" "$REPO/scripts/bench_adbc_pyarrow.py" --url "$URL" --table "$TABLE" --out-dir "$OUT"
measure duckdb_postgres from-json \
  "$VENV/bin/python" "$REPO/scripts/bench_duckdb_postgres.py" --url "$URL" --table "$TABLE" --out-dir "$OUT"
