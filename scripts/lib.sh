# shellcheck shell=bash
# Helpers shared by the pg2bq dev scripts. Source it; do not run it.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${PG2BQ_STATE_DIR:-$REPO/.pg2bq-tmp}
# shellcheck disable=SC2034 # used by the scripts that source this file
VENV=$REPO/.venv-tools
# shellcheck disable=SC2034 # BigQuery emulator venv (bq-install.sh) and the HOME its DuckDB uses
BQ_VENV=$REPO/.venv-bq
# shellcheck disable=SC2034
BQ_HOME=$BQ_VENV/home

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A TCP port that is free right now on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# initdb/pg_ctl refuse root: run them as `postgres` when we are root.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# Directory for the cluster. $STATE_DIR/pg normally; a /tmp dir keyed by a hash
# of $STATE_DIR when postgres cannot reach $STATE_DIR or the socket path would be
# too long (Unix socket paths are limited to ~107 bytes).
pg_dir() {
  local dir=$STATE_DIR/pg hash
  hash=$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-12)
  local fallback=/tmp/pg2bq-$hash/pg
  if [[ -d $dir ]]; then echo "$dir"; return; fi
  if [[ -d $fallback ]]; then echo "$fallback"; return; fi
  if ((${#dir} > 80)) || ! as_pg test -x "$STATE_DIR" 2>/dev/null; then
    echo "$fallback"
  else
    echo "$dir"
  fi
}
