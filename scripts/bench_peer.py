"""What the peer benchmark scripts share: their flags, where they write, and the JSON line
scripts/bench-peers.sh reads ({"tool", "rows", "seconds", "parquet_bytes", "path"})."""
import argparse
import json
import os


def parse_args(doc, add_options=None):
    """--url (or PG2BQ_TEST_PG_URL), --table, --out-dir, and whatever add_options adds."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--url", default=os.environ.get("PG2BQ_TEST_PG_URL"))
    ap.add_argument("--table", required=True, help="schema-qualified, or bare for public")
    ap.add_argument("--out-dir", required=True)
    if add_options:
        add_options(ap)
    args = ap.parse_args()
    if not args.url:
        ap.error("--url or PG2BQ_TEST_PG_URL is required")
    os.makedirs(args.out_dir, exist_ok=True)
    return args


def parquet_path(args, tool):
    return os.path.join(args.out_dir, f"{args.table}.{tool}.parquet")


def report(tool, rows, seconds, path):
    print(json.dumps({"tool": tool, "rows": rows, "seconds": round(seconds, 3),
                      "parquet_bytes": os.path.getsize(path), "path": path}))
