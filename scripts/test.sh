#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what the
# tests need, then runs format, lint and every test.
#
#   scripts/test.sh [extra cargo test args]
#
# Installs (once, into ${AIRLOCK_CACHE:-~/.cache/airlock}, shared by every
# checkout): Debian's Rust toolchain + wasm-tools for building plugins, the
# Garage S3 server, the real clients the tests drive (npm's tus-js-client
# into tests/tus/node_modules, PyPI's tuspy into a venv, Debian's chromium
# with npm's playwright-core in tests/browser/node_modules). Building the
# host bundles its web pages with npm's esbuild (host/build.rs).
# Starts: Redis on 127.0.0.1:6379 if none answers there, and a Garage
# single node on loopback for the run (stopped afterwards).
# Garage builds in the background (log: ~/.cache/airlock/logs/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export AIRLOCK_CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$AIRLOCK_CACHE/target}"
# npm's downloads (the web pages' esbuild, the test clients, componentize-js
# for JavaScript plugins) are cached with the rest.
export npm_config_cache="${npm_config_cache:-$AIRLOCK_CACHE/npm}"
step() { printf '\n==> %s\n' "$*"; }

# Garage is the longest single build and is needed only once the tests run:
# it builds in the background, at nice 10, while the plugins and the host
# build in the foreground. On 2 cores that is no fight for the CPU: run one
# after the other, a cold run kept only 1.1 cores busy on average (73
# CPU-minutes in 65 minutes), as the foreground leaves a core idle for long
# stretches (apt and crate downloads, the plugins' single-codegen-unit LTO
# links, serial chains of big crates, linking the test binaries). The
# background build fills those; the rest of the time the foreground has
# priority. If a foreground step fails, the Garage build goes on and is
# kept for the next run.
step "s3 server: installing garage if missing (building in the background)"
scripts/install-s3-server.sh deps # apt first: never two apt-gets at once
mkdir -p "$AIRLOCK_CACHE/logs"
garage_log="$AIRLOCK_CACHE/logs/install-s3-server.log"
scripts/install-s3-server.sh >"$garage_log" 2>&1 &
garage_build=$!

step "plugins: building every plugin under plugins/ into a component"
scripts/build-plugins.sh

step "test clients: tus-js-client (npm) and tuspy (PyPI), chromium (Debian) and playwright-core (npm)"
AIRLOCK_TEST_TUSPY="$(scripts/install-test-clients.sh --print-python | tail -n 1)"
export AIRLOCK_TEST_TUSPY

step "redis: making sure one answers on 127.0.0.1:6379"
scripts/redis.sh ensure

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "plugin SDK and plugins' unit tests, on the host"
(
  cd plugins
  export CARGO_TARGET_DIR="$AIRLOCK_CACHE/sdk-host-target"
  cargo fmt -p airlock-plugin-sdk -- --check
  for world in processor extension; do
    cargo clippy --quiet -p airlock-plugin-sdk --features "$world" -- -D warnings
    cargo test --quiet --doc -p airlock-plugin-sdk --features "$world"
  done
  # One plugin at a time: their SDK world features differ.
  for lib in */src/lib.rs; do
    if grep -q 'cfg(test)' "$lib"; then
      cargo test --quiet -p "${lib%%/*}"
    fi
  done
)

step "tests: building"
cargo test --workspace --no-run --quiet

step "s3 server: waiting for the garage install (log: $garage_log)"
if ! wait "$garage_build"; then
  tail -n 30 "$garage_log" >&2
  echo "error: installing garage failed (log: $garage_log)" >&2
  exit 1
fi
tail -n 1 "$garage_log"

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

step "tests"
cargo test --workspace "$@"
