#!/usr/bin/env bash
# Debian's PostgreSQL server binaries for the history database tests and benchmark (hack/postgres.py
# runs its own throwaway server from them). Nothing to do when a /usr/lib/postgresql/N/bin is there.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# Debian's package creates and starts a "main" cluster on 5432; the tests do not use it.
$sudo apt-get install -y -q --no-install-recommends postgresql
