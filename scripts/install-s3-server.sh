#!/usr/bin/env bash
# Installs Garage (a real, distributed S3-compatible object store, published on
# crates.io) into the persistent tools dir, once. The tests run it as a
# single node on 127.0.0.1 (see scripts/s3-server.sh).
set -euo pipefail

GARAGE_VERSION=2.5.0
TOOLS="${AIRLOCK_CACHE:-$HOME/.cache/airlock}/tools"
BIN="$TOOLS/bin/garage"

if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
  echo "s3 server: garage $GARAGE_VERSION already installed at $BIN"
  exit 0
fi
command -v cargo >/dev/null || { echo "error: cargo is needed to install garage" >&2; exit 1; }
echo "s3 server: building garage $GARAGE_VERSION from crates.io (15-20 min on 2 cores, once)"
mkdir -p "$TOOLS"
CARGO_TARGET_DIR="${AIRLOCK_CACHE:-$HOME/.cache/airlock}/tools-target" \
  nice -n 10 cargo install "garage@$GARAGE_VERSION" --locked --root "$TOOLS" --quiet
"$BIN" --version
