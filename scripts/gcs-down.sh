#!/usr/bin/env bash
# Stop the fake-gcs-server started by gcs-up.sh and delete its state.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_service fake-gcs-server "$STATE_DIR/gcs" "$STATE_DIR/gcs/fake-gcs-server.pid" 5

