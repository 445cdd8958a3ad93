"""Checks a benchmark's output against its Postgres table, so that no tool is timed on a short or
doubled export: the Parquet files under PATH (a file, or `*.parquet` at any depth below a
directory: a pg2bq run's data files, not its `.pq` side files) hold as many rows as the table,
and their `id` column the same sum and sum of squares (exact integers).

Usage: bench_check_output.py --table T --tool NAME [--url URL] PATH
Prints one line to stderr; exits 1 naming the tool and both figures when they differ.
"""
import argparse
import glob
import os
import subprocess
import sys

import pyarrow.parquet as pq


def expected(url, table):
    sql = f"SELECT count(*), coalesce(sum(id), 0), coalesce(sum(id::numeric * id), 0) FROM {table}"
    out = subprocess.run(["psql", "-X", "-At", "-F", " ", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return tuple(int(figure) for figure in out.split())


def actual(path):
    files = [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    rows = total = squares = 0
    for name in files:
        parquet = pq.ParquetFile(name)
        for group in range(parquet.num_row_groups):
            ids = parquet.read_row_group(group, columns=["id"]).column("id").to_pylist()
            rows += len(ids)
            total += sum(ids)
            squares += sum(value * value for value in ids)
    return rows, total, squares


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default=os.environ.get("PG2BQ_TEST_PG_URL"))
    ap.add_argument("--table", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("path")
    args = ap.parse_args()
    want, got = expected(args.url, args.table), actual(args.path)
    figures = "rows, sum(id), sum(id²)"
    if want != got:
        print(f"{args.tool}: output differs from {args.table}: {figures} {got} instead of {want}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.tool}: output matches {args.table}: {figures} {got}", file=sys.stderr)


if __name__ == "__main__":
    main()
