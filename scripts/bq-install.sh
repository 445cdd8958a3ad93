#!/usr/bin/env bash
# Create/refresh <repo>/.venv-bq (Python 3.13) with local-bigquery and the pinned lock in
# requirements-bq.txt, and the HOME dir whose ~/.duckdb/extensions points at the bundled
# DuckDB extension wheels (so DuckDB never downloads an extension).
# Idempotent: pip runs only when the requirements hash changed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

# --no-deps: requirements-bq.txt is a complete lock.
pip_sync "$BQ_VENV" "$REPO/scripts/requirements-bq.txt" .requirements.sha256 --no-deps

EXT=$("$BQ_VENV/bin/python" -c 'import duckdb_ext; print(list(duckdb_ext.__path__)[0])')/extensions # namespace package
[[ -d $EXT ]] || die "DuckDB extensions not found: $EXT"
mkdir -p "$BQ_HOME/.duckdb"
ln -sfn "$EXT" "$BQ_HOME/.duckdb/extensions"
log "done"
