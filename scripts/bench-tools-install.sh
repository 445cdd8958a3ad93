#!/usr/bin/env bash
# Add the peer benchmark tools (requirements-bench.txt) to <repo>/.venv-tools, after the tools
# of requirements-tools.txt. Only the benchmark scripts call this; tests and CI do not.
# Idempotent: pip runs only when the requirements hash changed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$REPO/scripts/tools-install.sh"

pip_sync "$VENV" "$REPO/scripts/requirements-bench.txt" .requirements-bench.sha256
log "done"
