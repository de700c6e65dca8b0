# Source me: puts Go >= 1.26 first on PATH (the local cluster is built from Go modules, and
# istio.io/istio's go.mod says go 1.26.0), fetching the toolchain from the Go module proxy (module
# golang.org/toolchain, what `go` itself fetches to switch toolchains) into ~/.cache/detour when the
# machine's go is missing or older. Like node-env.sh: each step that can fail says which and why.
detour_go_version=1.26.8
detour_go_new_enough() {
  command -v go >/dev/null 2>&1 || return 1
  go version 2>/dev/null | awk '{ split(substr($3, 3), v, "."); exit !(v[1] > 1 || (v[1] == 1 && v[2] >= 26)) }'
}
if ! detour_go_new_enough; then
  DETOUR_CACHE="${DETOUR_CACHE:-$HOME/.cache/detour}"
  detour_go_dir="$DETOUR_CACHE/go-$detour_go_version"
  if [ ! -x "$detour_go_dir/bin/go" ]; then
    case "$(uname -m)" in
      x86_64) detour_go_arch=amd64 ;;
      aarch64 | arm64) detour_go_arch=arm64 ;;
      *) detour_go_arch="$(uname -m)" ;;
    esac
    detour_go_module="golang.org/toolchain@v0.0.1-go$detour_go_version.linux-$detour_go_arch"
    detour_go_url="https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$detour_go_version.linux-$detour_go_arch.zip"
    detour_go_have=$(go version 2>/dev/null | awk '{ print $3 }' || true)
    echo "detour: go (${detour_go_have:-missing}) is older than 1.26; fetching $detour_go_module from the Go module proxy into $DETOUR_CACHE" >&2
    detour_tmp=$(mktemp -d)
    if ! detour_out=$(curl -fsSL -o "$detour_tmp/go.zip" "$detour_go_url" 2>&1); then
      printf '%s\n' "$detour_out" >&2
      echo "detour: step 'fetch $detour_go_module' failed (curl's output above): check that the Go module proxy is reachable (curl -I $detour_go_url), or install Go >= 1.26 yourself" >&2
      rm -rf "$detour_tmp"; return 1
    fi
    # A module zip: every file under <module>@<version>/, and no execute bits (go sets them itself).
    if ! detour_out=$({ python3 -m zipfile -e "$detour_tmp/go.zip" "$detour_tmp/x" &&
      chmod +x "$detour_tmp/x/$detour_go_module"/bin/* "$detour_tmp/x/$detour_go_module"/pkg/tool/*/* &&
      mkdir -p "$DETOUR_CACHE" && rm -rf "$detour_go_dir" && mv "$detour_tmp/x/$detour_go_module" "$detour_go_dir"; } 2>&1); then
      printf '%s\n' "$detour_out" >&2
      echo "detour: step 'unpack $detour_go_module into $detour_go_dir' failed (output above): check the free space (df $DETOUR_CACHE) and that python3 runs" >&2
      rm -rf "$detour_tmp"; return 1
    fi
    rm -rf "$detour_tmp"
  fi
  export PATH="$detour_go_dir/bin:$PATH"
  if ! detour_go_new_enough; then
    echo "detour: step 'run Go $detour_go_version' failed: $detour_go_dir/bin/go does not run (it printed: $(go version 2>&1)); remove that folder and retry" >&2
    return 1
  fi
fi
