"""Opens every data file a manifest names at the manifest's directory joined with the file's
relative `path` and nothing else (no decoding): prints {"path": rows, ...} as JSON.

Usage: python tests/open_manifest.py MANIFEST pyarrow|duckdb. MANIFEST is a local path or
gs://bucket/…/manifest.json (read with pyarrow from the fake-gcs-server at
STORAGE_EMULATOR_HOST); with `duckdb`, local files are read by DuckDB's read_parquet instead.
"""
import json
import os
import sys

import pyarrow.parquet as pq
from pyarrow import fs

location = sys.argv[1]
if location.startswith("gs://"):
    host = os.environ["STORAGE_EMULATOR_HOST"].split("://", 1)[-1]
    filesystem = fs.GcsFileSystem(anonymous=True, endpoint_override=host, scheme="http")
    location = location[len("gs://"):]
else:
    filesystem = fs.LocalFileSystem()
run_dir = location.rsplit("/", 1)[0]
with filesystem.open_input_stream(location) as stream:
    manifest = json.load(stream)
rows = {}
for table in manifest["tables"]:
    for file in table["files"]:
        path = f"{run_dir}/{file['path']}"
        if sys.argv[2:] == ["duckdb"]:
            import duckdb

            rows[file["path"]] = duckdb.execute("SELECT count(*) FROM read_parquet(?)", [path]).fetchone()[0]
        else:
            rows[file["path"]] = pq.read_table(path, filesystem=filesystem).num_rows
json.dump(rows, sys.stdout)
