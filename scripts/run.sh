#!/usr/bin/env bash
# Runs Airlock on its embedded defaults: local disk under ./data, in-memory
# cache, the example plugins (built first), on 127.0.0.1:8080, with the
# upload page at / and the operator dashboard at /admin (the log prints its
# link, with an admin token made up for this run).
#   scripts/run.sh [airlock serve args, e.g. --config airlock.toml]
# Building the binary bundles the pages with npm (host/build.rs): Node.js and
# npm come from Debian when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export AIRLOCK_CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$AIRLOCK_CACHE/target}"
export npm_config_cache="${npm_config_cache:-$AIRLOCK_CACHE/npm}"
# shellcheck source=lib/debian.sh
source scripts/lib/debian.sh
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
scripts/build-plugins.sh
exec cargo run --quiet -p airlock -- serve "$@"
