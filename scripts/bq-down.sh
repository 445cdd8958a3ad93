#!/usr/bin/env bash
# Stop the BigQuery emulator started by bq-up.sh and delete its state.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_service local-bigquery "$STATE_DIR/bq" "$STATE_DIR/bq/local-bigquery.pid" 10
