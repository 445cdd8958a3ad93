#!/usr/bin/env bash
# Create/refresh <repo>/.venv-tools with the pinned tools in requirements-tools.txt.
# Idempotent: pip runs only when the requirements hash changed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQ=$REPO/scripts/requirements-tools.txt
MARKER=$VENV/.requirements.sha256
PYTHON=${PG2BQ_TOOLS_PYTHON:-python3}

if [[ ! -x $VENV/bin/python ]]; then
  log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi

want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ -f $MARKER && $(cat "$MARKER") == "$want" ]]; then
  log "tools up to date in $VENV"
  exit 0
fi

log "installing $REQ"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
echo "$want" >"$MARKER"
log "done"
