"""Peer benchmark: stream a Postgres table with adbc-driver-postgresql into a zstd Parquet file.

Usage: bench_adbc_pyarrow.py --table T --out-dir DIR [--url URL]
Prints one JSON line: {"tool", "rows", "seconds", "parquet_bytes", "path"}.
"""
import time

import adbc_driver_postgresql.dbapi as pg
import pyarrow.parquet as pq

from bench_peer import parquet_path, parse_args, report


def main():
    args = parse_args(__doc__)
    tool = "adbc_pyarrow"
    path = parquet_path(args, tool)
    rows = 0
    start = time.perf_counter()
    with pg.connect(args.url) as conn, conn.cursor() as cur:
        # The driver reads with COPY (FORMAT binary) and hands over Arrow batches as they come.
        cur.execute(f"SELECT * FROM {args.table}")
        reader = cur.fetch_record_batch()
        with pq.ParquetWriter(path, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
    seconds = time.perf_counter() - start

    report(tool, rows, seconds, path)


if __name__ == "__main__":
    main()
