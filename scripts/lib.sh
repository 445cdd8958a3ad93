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

# Build against the system OpenSSL (system-deps.sh installs libssl-dev) instead of compiling
# the vendored copy ConnectorX would otherwise build: minutes less on a cold CI build.
export OPENSSL_NO_VENDOR=1

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# install_packages PKG...: apt-get installs the Debian packages named (none: nothing to do); as
# root only, else stops naming them.
install_packages() {
  (($#)) || return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing $*"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
  else
    die "missing system packages: $*"
  fi
}

# pip_sync VENV_DIR REQUIREMENTS MARKER [PIP_ARGS...]: install REQUIREMENTS into VENV_DIR unless
# VENV_DIR/MARKER records their hash already (so a re-run skips pip), then record it.
pip_sync() {
  local venv=$1 requirements=$2 marker=$1/$3 want
  shift 3
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [[ -f $marker && $(cat "$marker") == "$want" ]]; then
    log "up to date in $venv: ${requirements##*/}"
    return
  fi
  log "installing $requirements"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" -r "$requirements" >&2
  echo "$want" >"$marker"
}

# time_figures FILE ROWS: what `/usr/bin/time -v -o FILE` recorded for a run over ROWS rows, as
# JSON members: "seconds" (wall), "rows_per_s", "cpu_seconds" (user + system), "peak_rss_mb".
time_figures() {
  awk -v rows="$2" '
    /Elapsed \(wall clock\)/ { n = split($NF, t, ":"); secs = 0; for (i = 1; i <= n; i++) secs = secs * 60 + t[i] }
    /User time/ { user = $NF } /System time/ { sys = $NF }
    /Maximum resident set size/ { rss = $NF / 1024 }
    END { printf "\"seconds\":%.2f,\"rows_per_s\":%d,\"cpu_seconds\":%.2f,\"peak_rss_mb\":%.1f",
                 secs, (secs > 0 ? rows / secs : 0), user + sys, rss }' "$1"
}

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

# Directory for a cluster: pg_dir [NAME] (default `pg`; pg-up.sh --timescaledb uses `pg-timescaledb`).
# $STATE_DIR/NAME normally; a /tmp dir keyed by a hash of $STATE_DIR when postgres cannot reach
# $STATE_DIR or the socket path would be too long (Unix socket paths are limited to ~107 bytes).
pg_dir() {
  local name=${1:-pg}
  local dir=$STATE_DIR/$name hash
  hash=$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-12)
  local fallback=/tmp/pg2bq-$hash/$name
  if [[ -d $dir ]]; then echo "$dir"; return; fi
  if [[ -d $fallback ]]; then echo "$fallback"; return; fi
  if ((${#dir} > 80)) || ! as_pg test -x "$STATE_DIR" 2>/dev/null; then
    echo "$fallback"
  else
    echo "$dir"
  fi
}

# wait_ready NAME PID_FILE LOGFILE TIMEOUT_S CHECK...: poll CHECK until it succeeds; if the
# process dies or TIMEOUT_S passes, print the log tail and exit 1 (never a silent skip).
wait_ready() {
  local name=$1 pid_file=$2 logfile=$3 timeout=$4
  shift 4
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ((SECONDS >= deadline)) || ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      log "$name not answering; last log lines:"
      tail -n 40 "$logfile" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
}

# stop_service NAME DIR PID_FILE GRACE_S: TERM the pid, KILL it after GRACE_S, remove DIR.
stop_service() {
  local name=$1 dir=$2 pid_file=$3 grace=$4 pid
  if [[ -f $pid_file ]]; then
    pid=$(cat "$pid_file")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $name pid $pid"
    fi
  fi
  rm -rf "$dir"
  rmdir "$STATE_DIR" 2>/dev/null || true
}

# release_pg2bq: builds the release binary (logs on stderr) and prints its path.
release_pg2bq() {
  log "building pg2bq (release)"
  cargo build --release --locked --quiet
  echo "${CARGO_TARGET_DIR:-$REPO/target}/release/pg2bq"
}

# wait_for_plan LOG PID: returns once the coordinator PID, logging to LOG, has written its
# plan (docs/distributed.md); stops the script with that log if the coordinator ends first.
wait_for_plan() {
  until grep -q "Wrote the run's plan" "$1"; do
    kill -0 "$2" 2>/dev/null || { cat "$1" >&2; die "the coordinator stopped before writing its plan"; }
    sleep 0.1
  done
}
