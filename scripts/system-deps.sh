#!/usr/bin/env bash
# Make sure the system packages the build and scripts need are present (Debian).
# Installs missing ones with apt-get when running as root; otherwise says what to install.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v curl >/dev/null || missing+=(curl)
[[ -x /usr/bin/time ]] || missing+=(time)
# Headless browser for the report test (tests/it/browser.rs).
command -v chromium >/dev/null || missing+=(chromium)
for tool in initdb pg_ctl postgres; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH: install PostgreSQL 15 server binaries"
done
# Contrib extensions (citext) for the type-matrix fixture.
[[ -n $(find /usr/share/postgresql -name 'citext.control' -print -quit 2>/dev/null) ]] || missing+=(postgresql-contrib)

install_packages "${missing[@]}"
