#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what the
# tests need, then runs format, lint and every test.
#
#   scripts/test.sh [extra cargo test args]
#
# Installs (once, into ${AIRLOCK_CACHE:-~/.cache/airlock}, shared by every
# checkout): Debian's Rust toolchain + wasm-tools for building plugins, the
# Garage S3 server. Starts: Redis on 127.0.0.1:6379 if none answers there,
# and a Garage single node on loopback for the run (stopped afterwards).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export AIRLOCK_CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$AIRLOCK_CACHE/target}"
step() { printf '\n==> %s\n' "$*"; }

step "plugins: building every plugin under plugins/ into a component"
scripts/build-plugins.sh

step "s3 server: installing garage if missing"
scripts/install-s3-server.sh

step "redis: making sure one answers on 127.0.0.1:6379"
scripts/redis.sh ensure

step "s3 server: starting a garage single node on loopback"
# Stop it afterwards only if this run started it (another run may share it).
# (Assigned first: a failing command substitution inside `eval` would not
# stop the script.)
if scripts/s3-server.sh status 2>/dev/null; then
  s3_env="$(scripts/s3-server.sh env 2>/dev/null)"
else
  s3_env="$(scripts/s3-server.sh start)"
  trap 'scripts/s3-server.sh stop >/dev/null 2>&1 || true' EXIT
fi
eval "$s3_env"

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests"
cargo test --workspace "$@"
