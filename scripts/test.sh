#!/usr/bin/env bash
# The whole test suite, from a fresh machine: system packages, a throwaway Postgres, a second
# one with TimescaleDB (built from vendor/timescaledb once per machine, about 40 s on 2 cores),
# fake-gcs-server, the BigQuery emulator, the fault-injecting proxy in front of both
# (scripts/fault_proxy.py) and the Python readers, then unit, integration and (quick-mode)
# bench tests. Every service is stopped on exit. PG2BQ_TEST_STRICT=1 turns any would-be skip
# into a failure, so a service that did not come up can never pass silently.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

"$REPO/scripts/system-deps.sh"
"$REPO/scripts/licenses.sh"
"$REPO/scripts/timescaledb-install.sh"
cleanup() {
  "$REPO/scripts/faults-down.sh" || true
  "$REPO/scripts/bq-down.sh" || true
  "$REPO/scripts/gcs-down.sh" || true
  "$REPO/scripts/pg-down.sh" || true
  "$REPO/scripts/pg-down.sh" --timescaledb || true
}
trap cleanup EXIT

eval "$("$REPO/scripts/pg-up.sh")"
eval "$("$REPO/scripts/pg-up.sh" --timescaledb)"
eval "$("$REPO/scripts/gcs-up.sh")"
export STORAGE_EMULATOR_HOST
eval "$("$REPO/scripts/bq-up.sh")"
export BIGQUERY_EMULATOR_HOST
eval "$("$REPO/scripts/faults-up.sh")"
export PG2BQ_TEST_PG_URL PG2BQ_TEST_TIMESCALEDB_URL PG2BQ_TEST_GCS_BUCKET PG2BQ_TEST_BQ_PROJECT PG2BQ_TEST_GCS_FAULT_HOST PG2BQ_TEST_BQ_FAULT_HOST
export PG2BQ_TEST_PYTHON=$VENV/bin/python PG2BQ_TEST_BQ_PYTHON=$BQ_VENV/bin/python
export PG2BQ_TEST_STRICT=1

log "running cargo test (unit, integration, benches in test mode)"
# One test at a time: the BigQuery emulator's DuckLake catalog fails a commit that overlaps
# another table's commit ("Failed to commit DuckLake transaction"); BigQuery does not.
RUST_TEST_THREADS=1 cargo test --all-targets --locked "$@"
