# Sourced by the scripts that install Debian packages.

# Prints those of the Debian packages "$@" that are not installed.
missing_debian_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      printf '%s\n' "$pkg"
  done
}

# Installs those of the Debian packages "$@" that are missing (apt-get, as
# root or through sudo); output goes to stderr.
apt_install() {
  command -v dpkg-query >/dev/null && command -v apt-get >/dev/null || {
    echo "error: no apt-get to install $*" >&2
    return 1
  }
  local missing sudo=()
  mapfile -t missing < <(missing_debian_packages "$@")
  [[ ${#missing[@]} -gt 0 ]] || return 0
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "error: cannot install ${missing[*]} (not root, no sudo)" >&2; return 1; }
    sudo=(sudo)
  fi
  echo "apt-get install ${missing[*]}" >&2
  { "${sudo[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"; } >&2
}
