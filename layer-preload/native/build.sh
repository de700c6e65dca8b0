#!/usr/bin/env bash
# Builds detour's native preload library with the machine's C compiler (Debian: gcc and
# libc6-dev) into layer-preload/native/out/<os>-<arch>/. Idempotent: rebuilds only when a source
# is newer. Linux only for now (see layer-preload/README.md, "Limits", for what macOS needs).
#   bash layer-preload/native/build.sh            # prints the library's path
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
os="$(uname -s | tr '[:upper:]' '[:lower:]')"
arch="$(uname -m)"
case "$arch" in x86_64 | amd64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; esac
out="$here/out/$os-$arch"
cc="${CC:-cc}"
if [ "$os" != linux ]; then
  echo "detour native layer: $os is not supported yet (Linux only); detour falls back to the proxy variables and the JVM proxy properties" >&2
  exit 1
fi
command -v "$cc" >/dev/null 2>&1 || {
  echo "detour native layer: no C compiler ($cc) on PATH; install one: apt-get install gcc libc6-dev" >&2
  exit 1
}
lib="$out/libdetour.so"
flags=(-shared -Wl,-soname,libdetour.so -ldl -lpthread)
sources=("$here"/*.c)
stale=0
[ -f "$lib" ] || stale=1
for file in "${sources[@]}" "$here/detour.h"; do [ "$file" -nt "$lib" ] && stale=1; done
if [ "$stale" = 1 ]; then
  mkdir -p "$out"
  "$cc" -std=gnu11 -O2 -fPIC -fvisibility=default -Wall -Wextra -Werror -o "$lib.tmp" "${sources[@]}" "${flags[@]}"
  mv "$lib.tmp" "$lib"
fi
echo "$lib"
