#!/usr/bin/env bash
# Installs the real clients that the integration tests drive as
# subprocesses, and the reference tus server that scripts/bench-tus.sh runs
# beside Airlock:
# - tests/tus/node_modules from tests/tus/package-lock.json (`npm ci`):
#   tus-js-client (tests/tus/client.mjs, tests/tus/bench.mjs), @tus/server and
#   @tus/file-store (tests/tus/tus-server.mjs);
# - tests/browser/node_modules (`npm ci`): playwright-core, which drives
#   Debian's chromium (installed with apt) through the upload page and the
#   dashboard (tests/browser/*.mjs). node_modules are reinstalled only when
#   missing or older than their lock file;
# - a venv at ${AIRLOCK_CACHE:-~/.cache/airlock}/venv-tus with the PyPI tus
#   client `tuspy` (import `tusclient`, tests/tus/tuspy_client.py) and its
#   dependencies, all pinned below. Recreated only when the pins change.
# Node and npm come from Debian (nodejs, npm) when missing. Debian 12's nodejs
# is 18: tus-js-client runs on it, @tus/server wants >= 20.19 (the tests need
# only the clients). Caches: $AIRLOCK_CACHE/npm and $AIRLOCK_CACHE/pip. Warm,
# it runs neither npm nor pip.
#
#   scripts/install-test-clients.sh                 install what is missing
#   scripts/install-test-clients.sh --print-python  same, then print the venv's
#                                                   python on the last line
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
TUS_DIR="$ROOT/tests/tus"
VENV="$CACHE/venv-tus"
# tuspy and everything it pulls in (`pip freeze` of a fresh install).
PY_PINS=(
  tuspy==1.1.0
  requests==2.34.2 certifi==2026.10.19.post1 charset-normalizer==3.5.3 idna==3.20 urllib3==2.8.0
  tinydb==4.9.0
  aiohttp==3.14.5 aiohappyeyeballs==2.7.1 aiosignal==1.4.0 attrs==26.1.0 frozenlist==1.8.0
  multidict==7.2.1 propcache==0.5.4 yarl==1.25.1 typing_extensions==4.16.0
)
DEB_PACKAGES=(nodejs npm)
BROWSER_DIR="$ROOT/tests/browser"

print_python=0
case "${1:-}" in
  --print-python) print_python=1 ;;
  "") ;;
  *) echo "usage: $0 [--print-python]" >&2; exit 2 ;;
esac

say() { printf 'test clients: %s\n' "$*" >&2; }

# shellcheck source=lib/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"

# npm ci in "$1" unless its node_modules is newer than its lock file.
install_node_modules() {
  local dir="$1"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install "${DEB_PACKAGES[@]}"
  fi
  local stamp="$dir/node_modules/.package-lock.json"
  if [[ -f "$stamp" && ! "$dir/package-lock.json" -nt "$stamp" ]]; then
    return 0
  fi
  say "npm ci in ${dir#"$ROOT"/}"
  (cd "$dir" && npm ci --cache "$CACHE/npm" --prefer-offline --no-audit --no-fund --loglevel=error >&2)
  # npm ci leaves the stamp with the time of the install: newer than the lock.
  touch "$stamp"
}

install_venv() {
  local stamp="$VENV/.airlock-pins" want
  want="${PY_PINS[*]}"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  command -v python3 >/dev/null || apt_install python3
  say "creating $VENV (tuspy)"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 has no ensurepip without python3-venv.
    rm -rf "$VENV"
    apt_install python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --cache-dir "$CACHE/pip" "${PY_PINS[@]}" >&2
  printf '%s' "$want" >"$stamp"
}

mkdir -p "$CACHE"
install_node_modules "$TUS_DIR"
install_node_modules "$BROWSER_DIR"
# Headless Chromium for the browser tests (tests/all/browser.rs).
command -v chromium >/dev/null || apt_install chromium
install_venv
if ((print_python)); then
  printf '%s\n' "$VENV/bin/python"
fi
