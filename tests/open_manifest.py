"""Opens every data file a manifest names, with pyarrow, at the manifest's directory joined with
the file's relative `path` and nothing else (no decoding): prints {"path": rows, ...} as JSON.

Usage: python tests/open_manifest.py MANIFEST, a local path or gs://bucket/…/manifest.json
(read from the fake-gcs-server at STORAGE_EMULATOR_HOST).
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
        rows[file["path"]] = pq.read_table(f"{run_dir}/{file['path']}", filesystem=filesystem).num_rows
json.dump(rows, sys.stdout)
