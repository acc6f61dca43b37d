#!/usr/bin/env bash
# Installs the database engines the tests start on loopback, when missing (`make test` runs it; `make demo`
# needs none of them). Each engine is one block: check whether it is there, else install it from Debian (root).
set -euo pipefail

apt_updated=0
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-engines: $* missing and not root: run 'apt-get install -y $*' as root" >&2
        exit 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Postgres server binaries (initdb, pg_ctl) for tests/postgres_server.py.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    echo "install-engines: installing postgresql"
    apt_install postgresql
fi
