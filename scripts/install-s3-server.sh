#!/usr/bin/env bash
# Installs Garage (a real, distributed S3-compatible object store, published on
# crates.io) into the persistent tools dir, once. The tests run it as a
# single node on 127.0.0.1 (see scripts/s3-server.sh).
#
#   scripts/install-s3-server.sh         build and install it if missing
#   scripts/install-s3-server.sh deps    only the Debian packages the build
#                                        uses (quick; scripts/test.sh runs it
#                                        before the build goes to the
#                                        background, so that two apt-gets
#                                        never race for the dpkg lock)
#
# Built lean, for the tests only:
# - only the sqlite db engine, the one scripts/s3-server.sh configures: no
#   lmdb (a C build), k2v or metrics (protobuf, prometheus, opentelemetry);
# - libsodium from Debian (libsodium-dev, the 1.0.18 that libsodium-sys
#   bundles): building it from source runs configure and libsodium's whole
#   `make check` suite. Without apt it is still built from source;
# - at opt-level 1: a test server does not need -O3, and the big Garage
#   crates spend most of their build time in LLVM's optimizer.
set -euo pipefail

GARAGE_VERSION=2.5.0
GARAGE_FEATURES=bundled-libs,sqlite
CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
TOOLS="$CACHE/tools"
BIN="$TOOLS/bin/garage"
DEB_PACKAGES=(pkg-config libsodium-dev)

say() { printf 's3 server: %s\n' "$*"; }

# shellcheck source=lib/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"

# Best effort: without them the build falls back to libsodium's own.
install_deps() {
  command -v dpkg-query >/dev/null && command -v apt-get >/dev/null || return 0
  local missing sudo=()
  mapfile -t missing < <(missing_debian_packages "${DEB_PACKAGES[@]}")
  [[ ${#missing[@]} -gt 0 ]] || return 0
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || {
      say "cannot install ${missing[*]} (not root, no sudo): libsodium is built from source"
      return 0
    }
    sudo=(sudo)
  fi
  say "apt-get install ${missing[*]}"
  { "${sudo[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"; } >&2 ||
    say "apt-get failed: libsodium is built from source"
}

installed() { [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; }

if installed; then
  say "garage $GARAGE_VERSION already installed at $BIN"
  exit 0
fi
install_deps
[[ "${1:-}" == deps ]] && exit 0

command -v cargo >/dev/null || { echo "error: cargo is needed to install garage" >&2; exit 1; }
build_env=(CARGO_TARGET_DIR="$CACHE/tools-target" CARGO_PROFILE_RELEASE_OPT_LEVEL=1)
if pkg-config --exists 'libsodium >= 1.0.18' 2>/dev/null; then
  build_env+=(SODIUM_USE_PKG_CONFIG=1)
else
  say "no libsodium-dev: building libsodium from source too"
fi
say "building garage $GARAGE_VERSION ($GARAGE_FEATURES) from crates.io (about 10 CPU-minutes, once)"
mkdir -p "$TOOLS"
env -u SODIUM_USE_PKG_CONFIG -u SODIUM_LIB_DIR "${build_env[@]}" \
  nice -n 10 cargo install "garage@$GARAGE_VERSION" --locked --root "$TOOLS" --quiet \
  --no-default-features --features "$GARAGE_FEATURES"
"$BIN" --version
