#!/usr/bin/env bash
# Build and install TimescaleDB (Apache-2.0 part) from vendor/timescaledb into the machine's
# PostgreSQL 15, once per machine: skipped when this version's library is already installed.
# TimescaleDB is not in Debian; 2.28 is the last release line that supports PostgreSQL 15.
# Needs root (apt-get for the build packages, `make install` into the server's directories).
# About 40 s on 2 cores the first time (the Apache-2.0 part: 116 C files); well under a second afterwards.
# Usage: scripts/timescaledb-install.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION=2.28.3
TARBALL=$REPO/vendor/timescaledb/timescaledb-$VERSION-apache.tar.gz

installed() {
  local lib share
  lib=$(pg_config --pkglibdir) share=$(pg_config --sharedir)
  [[ -f $lib/timescaledb-$VERSION.so && -f $share/extension/timescaledb--$VERSION.sql ]]
}

if command -v pg_config >/dev/null && installed; then
  log "timescaledb $VERSION already installed in $(pg_config --pkglibdir)"
  exit 0
fi
[[ -f $TARBALL ]] || die "missing $TARBALL"

# The server headers (PGXS) and cmake; postgresql-server-dev-15 also brings pg_config.
missing=()
[[ -f /usr/include/postgresql/15/server/postgres.h ]] || missing+=(postgresql-server-dev-15)
command -v cmake >/dev/null || missing+=(cmake)
command -v make >/dev/null || missing+=(make)
command -v cc >/dev/null || missing+=(gcc)
install_packages "${missing[@]}"
[[ $(pg_config --version) == "PostgreSQL 15."* ]] || die "pg_config is $(pg_config --version), want PostgreSQL 15"

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/pg2bq-timescaledb.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
log "building timescaledb $VERSION in $BUILD (a few minutes; log: $BUILD/build.log)"
start=$SECONDS
tar xzf "$TARBALL" -C "$BUILD"
(
  cd "$BUILD/timescaledb-$VERSION"
  ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
    -DLINTER=OFF -DCMAKE_BUILD_TYPE=Release -DPG_CONFIG="$(command -v pg_config)"
  make -C build -j"$(nproc)"
  make -C build install
) >"$BUILD/build.log" 2>&1 || {
  tail -n 60 "$BUILD/build.log" >&2
  die "timescaledb build failed"
}
installed || die "timescaledb $VERSION built but not found in $(pg_config --pkglibdir)"
log "timescaledb $VERSION installed in $((SECONDS - start)) s"
