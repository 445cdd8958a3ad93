#!/usr/bin/env bash
# Fails if any crate in the dependency tree (normal, build and dev) is under a GPL-family
# licence without a permissive alternative, or if the vendored TimescaleDB source (built for the
# tests only, vendor/timescaledb/README.md) holds anything but its Apache-2.0 part. pg2bq is MIT
# OR Apache-2.0.
# Usage: scripts/licenses.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

cargo metadata --format-version 1 --locked | python3 "$REPO/scripts/licenses.py"

for tarball in "$REPO"/vendor/timescaledb/*.tar.gz; do
  listing=$(tar tzf "$tarball")
  grep -q '/LICENSE-APACHE$' <<<"$listing" || die "$tarball has no LICENSE-APACHE"
  if grep -q -e '/tsl/' -e 'LICENSE-TIMESCALE' <<<"$listing"; then
    die "$tarball holds Timescale License files: vendor only the Apache-2.0 part"
  fi
done
