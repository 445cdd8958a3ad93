"""Peer benchmark: read a Postgres table with connectorx (Python) into Arrow, write Parquet (zstd).

Usage: bench_connectorx_pyarrow.py --table T --out-dir DIR [--url URL] [--partitions N]
Prints one JSON line: {"tool", "rows", "seconds", "parquet_bytes", "path"}.
"""
import argparse
import json
import os
import time

import connectorx as cx
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default=os.environ.get("PG2BQ_TEST_PG_URL"))
    ap.add_argument("--table", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--partitions", type=int, default=1, help=">1: partition_on=id")
    args = ap.parse_args()
    if not args.url:
        ap.error("--url or PG2BQ_TEST_PG_URL is required")

    tool = "connectorx_pyarrow" + (f"_p{args.partitions}" if args.partitions > 1 else "")
    kwargs = {}
    if args.partitions > 1:
        kwargs = {"partition_on": "id", "partition_num": args.partitions}

    start = time.perf_counter()
    table = cx.read_sql(args.url, f"SELECT * FROM {args.table}", return_type="arrow", **kwargs)
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"{args.table}.{tool}.parquet")
    pq.write_table(table, path, compression="zstd")
    seconds = time.perf_counter() - start

    print(json.dumps({"tool": tool, "rows": table.num_rows, "seconds": round(seconds, 3),
                      "parquet_bytes": os.path.getsize(path), "path": path}))


if __name__ == "__main__":
    main()
