#!/usr/bin/env bash
# Builds detour's native preload library with the machine's C compiler (Debian: gcc from
# build-essential; macOS: the Xcode command line tools' clang) into
# layer-preload/native/out/<os>-<arch>/. Idempotent: rebuilds only when a source is newer.
#   bash layer-preload/native/build.sh            # prints the library's path
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
os="$(uname -s | tr '[:upper:]' '[:lower:]')"
arch="$(uname -m)"
case "$arch" in x86_64 | amd64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; esac
out="$here/out/$os-$arch"
cc="${CC:-cc}"
command -v "$cc" >/dev/null 2>&1 || {
  echo "detour native layer: no C compiler ($cc) on PATH; install one: apt-get install gcc libc6-dev (Debian), xcode-select --install (macOS)" >&2
  exit 1
}
case "$os" in
  linux) lib="$out/libdetour.so"; flags=(-shared -Wl,-soname,libdetour.so -ldl -lpthread) ;;
  darwin) lib="$out/libdetour.dylib"; flags=(-dynamiclib) ;;
  *) echo "detour native layer: $os is not supported (Linux and macOS are)" >&2; exit 1 ;;
esac
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
