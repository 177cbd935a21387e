# Sourced by the scripts that install Debian packages.

# Prints those of the Debian packages "$@" that are not installed.
missing_debian_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      printf '%s\n' "$pkg"
  done
}
