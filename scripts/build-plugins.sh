#!/usr/bin/env bash
# Builds every Airlock plugin into a validated WebAssembly component.
#
# Usage: scripts/build-plugins.sh [PLUGIN...]     (default: all of them)
#
# Output: plugins/dist/<name>.wasm (override with AIRLOCK_PLUGINS_OUT, or
#         AIRLOCK_PLUGINS_DIR, the variable the tests read).
# Cache:  ${AIRLOCK_CACHE:-$HOME/.cache/airlock}/plugins-target (cargo target
#         dir, shared by every checkout) and .../tools (the wasm-tools CLI).
#
# Rust plugins are built for wasm32-unknown-unknown with Debian's rustc and
# the library source (rustc-web + rust-web-src, -Zbuild-std): no rustup
# target is needed, and the components import nothing but airlock:plugin
# interfaces. Missing Debian packages are installed with apt-get, and the
# wasm-tools CLI with `cargo install` (once, 5-7 min). A re-run with nothing
# changed takes seconds.
set -euo pipefail

WASM_TOOLS_VERSION=1.263.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUGINS="$ROOT/plugins"
CACHE="${AIRLOCK_CACHE:-$HOME/.cache/airlock}"
TARGET_DIR="$CACHE/plugins-target"
TOOLS="$CACHE/tools"
OUT="${AIRLOCK_PLUGINS_OUT:-${AIRLOCK_PLUGINS_DIR:-$PLUGINS/dist}}"
TARGET=wasm32-unknown-unknown

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-plugins: error: %s\n' "$*" >&2; exit 1; }

# Plugins are found by layout: plugins/<name>/Cargo.toml with a cdylib (a Rust
# plugin; crate name = directory name, and a member of plugins/Cargo.toml), or
# plugins/<name>/component.wat (a hand-written component).
mapfile -t RUST_PLUGINS < <(grep -l '^crate-type = \["cdylib"\]' "$PLUGINS"/*/Cargo.toml |
    xargs -r -n1 dirname | xargs -r -n1 basename)
mapfile -t WAT_PLUGINS < <(find "$PLUGINS" -mindepth 2 -maxdepth 2 -name component.wat |
    xargs -r -n1 dirname | xargs -r -n1 basename | sort)
# Plugins that are meant to import something outside airlock:plugin.
ALLOWED_FOREIGN_IMPORTS=(wasi-escape)

if [[ $# -gt 0 ]]; then
    selected=("$@")
    for name in "${selected[@]}"; do
        [[ " ${RUST_PLUGINS[*]} ${WAT_PLUGINS[*]} " == *" $name "* ]] ||
            die "no plugin named '$name' (known: ${RUST_PLUGINS[*]} ${WAT_PLUGINS[*]})"
    done
else
    selected=("${RUST_PLUGINS[@]}" "${WAT_PLUGINS[@]}")
fi
[[ ${#selected[@]} -gt 0 ]] || die "no plugins found under $PLUGINS"

# --- 1. Debian toolchain --------------------------------------------------
# shellcheck source=lib/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"
apt_updated=0
apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null ||
            die "missing Debian packages: $*; install them as root (apt-get install $*)"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null || die "missing packages $* and no apt-get to install them"
    if [[ $apt_updated -eq 0 ]]; then
        step "apt-get update"
        "${sudo[@]}" apt-get update -qq >&2 || die "apt-get update failed"
        apt_updated=1
    fi
    step "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >&2 ||
        die "apt-get install failed for: $*"
}

mapfile -t missing < <(missing_debian_packages rustc-web cargo-web rust-web-src wasi-libc)
if [[ ${#missing[@]} -gt 0 ]]; then apt_install "${missing[@]}"; fi
[[ -x /usr/bin/rustc && -x /usr/bin/cargo ]] ||
    die "Debian's /usr/bin/rustc or /usr/bin/cargo is missing (packages rustc-web, cargo-web)"
llvm_major="$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
[[ -n $llvm_major ]] || die "cannot read the LLVM version from '/usr/bin/rustc -vV'"
mapfile -t missing < <(missing_debian_packages "lld-$llvm_major")
if [[ ${#missing[@]} -gt 0 ]]; then apt_install "${missing[@]}"; fi
LINKER="/usr/bin/wasm-ld-$llvm_major"
[[ -x $LINKER ]] || die "linker $LINKER is missing (package lld-$llvm_major)"
SYSROOT="$(/usr/bin/rustc --print sysroot)"
[[ -f "$SYSROOT/lib/rustlib/src/rust/library/Cargo.lock" ]] ||
    die "Rust library source missing under $SYSROOT/lib/rustlib/src (package rust-web-src)"
step "toolchain: $(/usr/bin/rustc -V), linker $LINKER"

# --- 2. wasm-tools CLI ----------------------------------------------------
WASM_TOOLS="$TOOLS/bin/wasm-tools"
if [[ ! -x $WASM_TOOLS ]] || [[ "$("$WASM_TOOLS" --version 2>/dev/null)" != "wasm-tools $WASM_TOOLS_VERSION"* ]]; then
    host_cargo="$(command -v cargo || true)"
    [[ -n $host_cargo ]] || die "no cargo on PATH to install wasm-tools $WASM_TOOLS_VERSION"
    step "cargo install wasm-tools@$WASM_TOOLS_VERSION into $TOOLS (one-off, several minutes)"
    nice -n 10 "$host_cargo" install "wasm-tools@$WASM_TOOLS_VERSION" --locked --quiet \
        --no-default-features --features component,validate,parse,print,metadata \
        --root "$TOOLS" >&2 || die "installing wasm-tools $WASM_TOOLS_VERSION failed"
fi
step "componentizer: $("$WASM_TOOLS" --version)"

# --- 3. Build the Rust plugins --------------------------------------------
# One cargo invocation per plugin: the SDK's processor/extension features
# differ per plugin, and building several at once would unify them.
mkdir -p "$TARGET_DIR" "$OUT"
build_env=(
    env -u RUSTC_WRAPPER -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTUP_TOOLCHAIN
    "PATH=/usr/bin:$PATH"
    RUSTC=/usr/bin/rustc
    RUSTDOC=/usr/bin/rustdoc
    RUSTC_BOOTSTRAP=1
    "CARGO_TARGET_DIR=$TARGET_DIR"
    "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$LINKER"
    CARGO_PROFILE_RELEASE_PANIC=abort
)
is_foreign_ok() {
    local n
    for n in "${ALLOWED_FOREIGN_IMPORTS[@]}"; do [[ $n == "$1" ]] && return 0; done
    return 1
}
check_component() { # name path
    "$WASM_TOOLS" validate --features component-model "$2" ||
        die "$1: $2 is not a valid component"
    local foreign
    foreign="$("$WASM_TOOLS" component wit "$2" | grep -E '^\s*import ' | grep -v 'airlock:plugin/' || true)"
    if [[ -n $foreign ]] && ! is_foreign_ok "$1"; then
        die "$1 imports something outside airlock:plugin: $foreign"
    fi
}

for name in "${selected[@]}"; do
    if [[ -f "$PLUGINS/$name/component.wat" ]]; then
        step "$name: wasm-tools parse component.wat"
        "$WASM_TOOLS" parse "$PLUGINS/$name/component.wat" -o "$OUT/$name.wasm" ||
            die "$name: cannot parse $PLUGINS/$name/component.wat"
        check_component "$name" "$OUT/$name.wasm"
        continue
    fi
    step "$name: cargo build --release --target $TARGET -Zbuild-std"
    (cd "$PLUGINS" && nice -n 10 "${build_env[@]}" /usr/bin/cargo build --quiet --release \
        --target "$TARGET" -Zbuild-std=std,panic_abort -p "$name") ||
        die "$name: cargo build failed"
    core="$TARGET_DIR/$TARGET/release/${name//-/_}.wasm"
    [[ -f $core ]] || die "$name: the build produced no $core"
    "$WASM_TOOLS" component new "$core" -o "$OUT/$name.wasm" ||
        die "$name: wasm-tools component new failed"
    check_component "$name" "$OUT/$name.wasm"
done

# --- 4. Report ------------------------------------------------------------
step "components in ${OUT#"$ROOT"/}:"
for name in "${selected[@]}"; do
    printf '  %-20s %9s bytes\n' "$name.wasm" "$(stat -c %s "$OUT/$name.wasm")"
done
