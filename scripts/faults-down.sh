#!/usr/bin/env bash
# Stop the fault-injecting proxy started by faults-up.sh and delete its state.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_service fault_proxy "$STATE_DIR/faults" "$STATE_DIR/faults/fault_proxy.pid" 5
