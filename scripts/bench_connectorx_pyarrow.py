"""Peer benchmark: read a Postgres table with connectorx (Python) into Arrow, write Parquet (zstd).

Usage: bench_connectorx_pyarrow.py --table T --out-dir DIR [--url URL] [--partitions N]
Prints one JSON line: {"tool", "rows", "seconds", "parquet_bytes", "path"}.
"""
import time

import connectorx as cx
import pyarrow.parquet as pq

from bench_peer import parquet_path, parse_args, report


def main():
    args = parse_args(__doc__, lambda ap: ap.add_argument(
        "--partitions", type=int, default=1, help=">1: partition_on=id"))
    tool = "connectorx_pyarrow" + (f"_p{args.partitions}" if args.partitions > 1 else "")
    kwargs = {}
    if args.partitions > 1:
        kwargs = {"partition_on": "id", "partition_num": args.partitions}

    start = time.perf_counter()
    table = cx.read_sql(args.url, f"SELECT * FROM {args.table}", return_type="arrow", **kwargs)
    path = parquet_path(args, tool)
    pq.write_table(table, path, compression="zstd")
    seconds = time.perf_counter() - start

    report(tool, table.num_rows, seconds, path)


if __name__ == "__main__":
    main()
