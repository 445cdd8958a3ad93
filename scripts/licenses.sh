#!/usr/bin/env bash
# Fails if any crate in the dependency tree (normal, build and dev) is under a GPL-family
# licence without a permissive alternative. pg2bq is MIT OR Apache-2.0.
# Usage: scripts/licenses.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

cargo metadata --format-version 1 --locked | python3 "$REPO/scripts/licenses.py"
