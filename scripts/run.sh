#!/usr/bin/env bash
# Runs Airlock on its embedded defaults: local disk under ./data, in-memory
# cache, the example plugins (built first), on 127.0.0.1:8080.
#   scripts/run.sh [airlock serve args, e.g. --config airlock.toml]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export AIRLOCK_CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$AIRLOCK_CACHE/target}"
scripts/build-plugins.sh
exec cargo run --quiet -p airlock -- serve "$@"
