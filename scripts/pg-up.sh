#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL 15 cluster for tests.
# Usage: eval "$(scripts/pg-up.sh)"                 # exports PG2BQ_TEST_PG_URL
#        eval "$(scripts/pg-up.sh --timescaledb)"   # a second cluster with TimescaleDB preloaded
#                                                   # (scripts/timescaledb-install.sh installs it);
#                                                   # exports PG2BQ_TEST_TIMESCALEDB_URL
# stdout: exactly one `export ...` line; all logs go to stderr.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=pg VAR=PG2BQ_TEST_PG_URL SETTINGS=()
case ${1:-} in
  "") ;;
  --timescaledb)
    NAME=pg-timescaledb VAR=PG2BQ_TEST_TIMESCALEDB_URL
    [[ -f $(pg_config --pkglibdir)/timescaledb.so ]] || die "TimescaleDB is not installed: run scripts/timescaledb-install.sh"
    SETTINGS=(-c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off)
    ;;
  *) die "usage: pg-up.sh [--timescaledb]" ;;
esac

mkdir -p "$STATE_DIR"
PG_DIR=$(pg_dir "$NAME")
DATA=$PG_DIR/data
SOCK=$PG_DIR/sock
LOGFILE=$PG_DIR/postgres.log
PORT_FILE=$PG_DIR/port

print_url() {
  echo "export $VAR=postgresql://pg2bq:pg2bq-secret@127.0.0.1:$1/pg2bq"
}

# Already running? Reuse it.
if [[ -f $DATA/postmaster.pid && -f $PORT_FILE ]] &&
  pg_isready -q -h 127.0.0.1 -p "$(cat "$PORT_FILE")" -U postgres; then
  log "reusing running cluster in $PG_DIR"
  print_url "$(cat "$PORT_FILE")"
  exit 0
fi

mkdir -p "$PG_DIR"
if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$PG_DIR"; fi
as_pg mkdir -p "$SOCK"

if [[ ! -f $DATA/PG_VERSION ]]; then
  log "initdb in $DATA"
  as_pg initdb -D "$DATA" -U postgres -E UTF8 --locale=C --auth=trust --no-sync >/dev/null
  # Trust auth for the local socket and 127.0.0.1 only.
  printf '%s\n' 'local all all trust' 'host all all 127.0.0.1/32 trust' |
    as_pg tee "$DATA/pg_hba.conf" >/dev/null
fi

PORT=$(free_port)
echo "$PORT" | as_pg tee "$PORT_FILE" >/dev/null
log "starting postgres on 127.0.0.1:$PORT (log: $LOGFILE)"
as_pg pg_ctl -D "$DATA" -l "$LOGFILE" -W start \
  -o "-p $PORT -c listen_addresses=127.0.0.1 -k '$SOCK' -c fsync=off -c synchronous_commit=off -c full_page_writes=off ${SETTINGS[*]}" >&2

deadline=$((SECONDS + 30))
start=$SECONDS
until pg_isready -q -h 127.0.0.1 -p "$PORT" -U postgres; do
  # Give up at the deadline, or early when the postmaster is gone (bad config etc.).
  if ((SECONDS >= deadline)) || { ((SECONDS - start >= 2)) && [[ ! -f $DATA/postmaster.pid ]]; }; then
    log "postgres not ready (waited $((SECONDS - start)) s of 30); last log lines:"
    tail -n 40 "$LOGFILE" >&2 || true
    exit 1
  fi
  sleep 0.2
done

# Role and database (idempotent).
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres >&2 <<'SQL'
SELECT 'CREATE ROLE pg2bq LOGIN SUPERUSER PASSWORD ''pg2bq-secret'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pg2bq') \gexec
SELECT 'CREATE DATABASE pg2bq OWNER pg2bq'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'pg2bq') \gexec
SQL

log "ready"
print_url "$PORT"
