"""Peer benchmark: DuckDB's postgres extension copying a Postgres table to a zstd Parquet file.

The extension comes from the duckdb-ext-postgres wheel (scripts/requirements-bench.txt) and is
loaded from site-packages: nothing is downloaded at run time. DuckDB runs at its defaults (as many
threads as cores, parallel ctid-range scans).

Usage: bench_duckdb_postgres.py --table T --out-dir DIR [--url URL]
Prints one JSON line: {"tool", "rows", "seconds", "parquet_bytes", "path"}.
"""
import importlib.util
import os
import time

import duckdb
import pyarrow.parquet as pq

from bench_peer import parquet_path, parse_args, report


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
    args = parse_args(__doc__)
    tool = "duckdb_postgres"
    schema, _, name = args.table.rpartition(".")
    schema = schema or "public"
    path = parquet_path(args, tool)
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
    report(tool, rows, seconds, path)


if __name__ == "__main__":
    main()
