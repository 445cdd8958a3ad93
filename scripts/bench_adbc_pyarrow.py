"""Peer benchmark: stream a Postgres table with adbc-driver-postgresql into a zstd Parquet file.

Usage: bench_adbc_pyarrow.py --table T --out-dir DIR [--url URL]
Prints one JSON line: {"tool", "rows", "seconds", "parquet_bytes", "path"}.
"""
import argparse
import json
import os
import time

import adbc_driver_postgresql.dbapi as pg
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default=os.environ.get("PG2BQ_TEST_PG_URL"))
    ap.add_argument("--table", required=True)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    if not args.url:
        ap.error("--url or PG2BQ_TEST_PG_URL is required")

    tool = "adbc_pyarrow"
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"{args.table}.{tool}.parquet")
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

    print(json.dumps({"tool": tool, "rows": rows, "seconds": round(seconds, 3),
                      "parquet_bytes": os.path.getsize(path), "path": path}))


if __name__ == "__main__":
    main()
