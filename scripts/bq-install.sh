#!/usr/bin/env bash
# Create/refresh <repo>/.venv-bq (Python 3.13) with local-bigquery and the pinned lock in
# requirements-bq.txt, and the HOME dir whose ~/.duckdb/extensions points at the bundled
# DuckDB extension wheels (so DuckDB never downloads an extension).
# Idempotent: pip runs only when the requirements hash changed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQ=$REPO/scripts/requirements-bq.txt
MARKER=$BQ_VENV/.requirements.sha256

if [[ ! -x $BQ_VENV/bin/python ]]; then
  PYTHON=${PG2BQ_BQ_PYTHON:-}
  if [[ -z $PYTHON ]] && command -v pyenv >/dev/null; then
    PYTHON=$(pyenv root)/versions/3.13.0/bin/python3.13
  fi
  [[ -n $PYTHON && -x $PYTHON ]] || PYTHON=$(command -v python3.13) ||
    die "Python 3.13 not found (pyenv's 3.13.0 or python3.13 on PATH); local-bigquery needs it"
  log "creating venv $BQ_VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$BQ_VENV"
fi

want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ -f $MARKER && $(cat "$MARKER") == "$want" ]]; then
  log "BigQuery emulator up to date in $BQ_VENV"
else
  log "installing $REQ (--no-deps: it is a complete lock)"
  "$BQ_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$REQ" >&2
  echo "$want" >"$MARKER"
fi

EXT=$("$BQ_VENV/bin/python" -c 'import duckdb_ext; print(list(duckdb_ext.__path__)[0])')/extensions # namespace package
[[ -d $EXT ]] || die "DuckDB extensions not found: $EXT"
mkdir -p "$BQ_HOME/.duckdb"
ln -sfn "$EXT" "$BQ_HOME/.duckdb/extensions"
log "done"
