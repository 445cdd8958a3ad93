#!/usr/bin/env bash
# Add the peer benchmark tools (requirements-bench.txt) to <repo>/.venv-tools, after the tools
# of requirements-tools.txt. Only the benchmark scripts call this; tests and CI do not.
# Idempotent: pip runs only when the requirements hash changed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$REPO/scripts/tools-install.sh"

REQ=$REPO/scripts/requirements-bench.txt
MARKER=$VENV/.requirements-bench.sha256

want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ -f $MARKER && $(cat "$MARKER") == "$want" ]]; then
  log "bench tools up to date in $VENV"
  exit 0
fi

log "installing $REQ"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
echo "$want" >"$MARKER"
log "done"
