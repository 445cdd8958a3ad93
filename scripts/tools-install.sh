#!/usr/bin/env bash
# Create/refresh <repo>/.venv-tools with the pinned tools in requirements-tools.txt.
# Idempotent: pip runs only when the requirements hash changed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PYTHON=${PG2BQ_TOOLS_PYTHON:-python3}

if [[ ! -x $VENV/bin/python ]]; then
  log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi

pip_sync "$VENV" "$REPO/scripts/requirements-tools.txt" .requirements.sha256
log "done"
