"""Peer benchmark: DuckDB's postgres extension copying a Postgres table to a zstd Parquet file.

The extension comes from the duckdb-ext-postgres wheel (scripts/requirements-bench.txt) and is
loaded from site-packages: nothing is downloaded at run time. DuckDB runs at its defaults (as many
threads as cores, parallel ctid-range scans).

Usage: bench_duckdb_postgres.py --table T --out-dir DIR [--url URL]
Prints one JSON line: {"tool", "rows", "seconds", "parquet_bytes", "path"}.
"""
import argparse
import importlib.util
import json
import os
import time

import duckdb
import pyarrow.parquet as pq


def extension_directory():
    # The duckdb-ext-* wheels install
    # <site-packages>/duckdb_ext/extensions/v<version>/<platform>/<name>.duckdb_extension.
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("duckdb-ext-postgres is not installed (scripts/bench-tools-install.sh)")
    return os.path.join(list(spec.submodule_search_locations)[0], "extensions")


def sql_literal(text):
    return "'" + text.replace("'", "''") + "'"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default=os.environ.get("PG2BQ_TEST_PG_URL"))
    ap.add_argument("--table", required=True, help="schema-qualified, or bare for public")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    if not args.url:
        ap.error("--url or PG2BQ_TEST_PG_URL is required")

    tool = "duckdb_postgres"
    schema, _, name = args.table.rpartition(".")
    schema = schema or "public"
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"{args.table}.{tool}.parquet")
    start = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET extension_directory = {sql_literal(extension_directory())}")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("LOAD postgres")
    con.execute(f"ATTACH {sql_literal(args.url)} AS pg (TYPE postgres, READ_ONLY)")
    con.execute(f'COPY (SELECT * FROM pg."{schema}"."{name}") TO {sql_literal(path)} '
                "(FORMAT parquet, COMPRESSION zstd)")
    con.close()
    seconds = time.perf_counter() - start

    rows = pq.read_metadata(path).num_rows  # the footer only, after the clock stopped
    print(json.dumps({"tool": tool, "rows": rows, "seconds": round(seconds, 3),
                      "parquet_bytes": os.path.getsize(path), "path": path}))


if __name__ == "__main__":
    main()
