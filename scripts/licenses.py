"""Reads `cargo metadata` JSON on stdin; fails if a crate is GPL-family only or unlicensed."""
import json
import re
import sys

meta = json.load(sys.stdin)
bad = []
for package in meta["packages"]:
    name = f"{package['name']} {package['version']}"
    licence = package.get("license") or ""
    # An SPDX "OR" expression is fine if any alternative is permissive.
    options = [o.strip(" ()") for o in re.split(r"\bOR\b|/", licence)]
    if licence and all(re.search(r"\b(A|L)?GPL", o) for o in options):
        bad.append(f"{name}: {licence}")
    if not licence and package["source"]:
        bad.append(f"{name}: no licence field (licence file: {package.get('license_file')})")
if bad:
    print("GPL-family or unknown licences in the tree:", *bad, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"licences ok: {len(meta['packages'])} packages, none GPL-only", file=sys.stderr)
