"""Prints a short human summary of a pg2bq manifest read from stdin."""
import json
import sys

manifest = json.load(sys.stdin)
source = manifest["source"]
print(f"run {manifest['run_id']}  source {source['url']}  (Postgres {source['server_version'].split()[0]}, "
      f"snapshot {source['txid_snapshot']}, WAL {source['wal_lsn']})")
for table in manifest["tables"]:
    size = sum(f["bytes"] for f in table["files"])
    print(f"\n{table['name']} -> {table['bq_table']}: {table['row_count']} rows, "
          f"{len(table['files'])} file(s), {size} bytes, {len(table['partitions'])} partition(s)")
    for fk in table["foreign_keys"]:
        print(f"  foreign key {','.join(fk['columns'])} -> {fk['references_table']}({','.join(fk['references_columns'])})")
    for column in table["columns"]:
        aggregates = column["aggregates"]
        bounds = ""
        if "min" in aggregates:
            low, high = (str(aggregates[k])[:24] for k in ("min", "max"))
            bounds = f"  min {low}  max {high}"
        bq_type = column["bq_type"] + (" REPEATED" if column["repeated"] else "")
        print(f"  {column['bq_name']:<14} {column['pg_type']:<26} -> {bq_type:<16} "
              f"nulls {aggregates['null_count']}{bounds}")
