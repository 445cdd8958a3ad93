#!/usr/bin/env bash
# Stop the cluster started by pg-up.sh and delete its state.
# Usage: scripts/pg-down.sh [--timescaledb]   # the same argument pg-up.sh was given
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  "") PG_DIR=$(pg_dir) ;;
  --timescaledb) PG_DIR=$(pg_dir pg-timescaledb) ;;
  *) die "usage: pg-down.sh [--timescaledb]" ;;
esac
if [[ -f $PG_DIR/data/postmaster.pid ]]; then
  log "stopping postgres in $PG_DIR"
  as_pg pg_ctl -D "$PG_DIR/data" stop -m fast >&2 || log "pg_ctl stop failed (already stopped?)"
fi
rm -rf "$PG_DIR"
# Drop now-empty parents (the /tmp fallback dir, the state dir).
rmdir "$(dirname "$PG_DIR")" 2>/dev/null || true
log "removed $PG_DIR"
