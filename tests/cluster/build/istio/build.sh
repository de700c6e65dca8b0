#!/usr/bin/env bash
# Builds istiod (pilot-discovery) and pilot-agent from the istio.io/istio Go module, once: cached under
# ~/.cache/detour/bin as <name>-<ISTIO_VERSION>-<commit>. A no-op when both are cached.
# Built through the wrapper module beside this script (go.mod explains its four replace directives).
# Tags and ldflags are those of istio's Makefile.core.mk. ISTIO_MODULE_VERSION must match go.mod's require.
# Also copies, from the same module, the files istiod and pilot-agent read at run time (the sidecar
# injection template, the istiod chart's default values, Envoy's bootstrap template) into
# ~/.cache/detour/istio/<ISTIO_VERSION>-<commit>/.
# Usage: tests/cluster/build/istio/build.sh [pilot-discovery] [pilot-agent] [files]   (default: all)
# Prints the path of each binary on its last line ("<name>: <path>").
# Each step names itself and its fix when it fails (scripts/steps.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../../../scripts/steps.sh
. "$HERE/../../../../scripts/steps.sh"
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE=${DETOUR_CACHE:-$HOME/.cache/detour}
BIN=$CACHE/bin
# Other work shares the machine's cores: builds run at low priority.
NICE=${DETOUR_BUILD_NICE:-15}
MODULE=istio.io/istio
COMMIT=${ISTIO_MODULE_VERSION##*-}
mkdir -p "$BIN"

step "check versions.env against go.mod" \
  "versions.env says $ISTIO_MODULE_VERSION: make go.mod's require of $MODULE the same version"
grep -q "^require $MODULE $ISTIO_MODULE_VERSION\$" "$HERE/go.mod"
step "Go >= 1.26 (scripts/go-env.sh; istio.io/istio's go.mod says go 1.26.0)" "see its message above"
# shellcheck source=../../../../scripts/go-env.sh
. "$HERE/../../../../scripts/go-env.sh"

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

ldflags() {
  local p=istio.io/istio/pkg/version
  echo "-s -w -X $p.buildVersion=$ISTIO_VERSION -X $p.buildGitRevision=$COMMIT -X $p.buildStatus=Clean" \
    "-X $p.buildTag=$ISTIO_MODULE_VERSION -X $p.buildHub=detour.local -X $p.buildOS=$(go env GOOS)" \
    "-X $p.buildArch=$(go env GOARCH)"
}

# build <binary name> <package> <tags>
build() {
  local name=$1 pkg=$2 tags=$3
  local out=$BIN/$name-$ISTIO_VERSION-$COMMIT
  if [[ -x $out ]]; then
    echo "build $name $ISTIO_VERSION ($COMMIT): cached"
    echo "$name: $out"
    return
  fi
  echo "build $name $ISTIO_VERSION ($COMMIT): building (first time only; 5-20 min on 2 cores, depending on load)..."
  local t0
  t0=$(now)
  step "build $name $ISTIO_VERSION ($COMMIT)" "go's output above says why: check that the Go module proxy is reachable (go env GOPROXY), and the free space (df $CACHE)"
  # GOTOOLCHAIN=local: use the installed Go rather than fetching the toolchain go.mod names.
  (cd "$HERE" && nice -n "$NICE" env CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local \
    go build -trimpath -tags "$tags" -ldflags "$(ldflags)" -o "$out.tmp" "$MODULE/$pkg")
  mv "$out.tmp" "$out"
  echo "build $name $ISTIO_VERSION ($COMMIT): done in $(took "$t0")"
  echo "$name: $out"
}

# Run-time files from the module source: copied, never edited (tests/cluster/istio renders from them).
files() {
  local dest=$CACHE/istio/$ISTIO_VERSION-$COMMIT
  if [[ -s $dest/injection-template.yaml && -s $dest/istio-discovery-values.yaml && -s $dest/envoy_bootstrap_tmpl.json ]]; then
    echo "istio files $ISTIO_VERSION ($COMMIT): cached"
    return
  fi
  local dir
  step "istio files $ISTIO_VERSION ($COMMIT)" "go's output above says why: check that the Go module proxy is reachable (go env GOPROXY), and the free space (df $CACHE)"
  dir=$(cd "$HERE" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$MODULE@$ISTIO_MODULE_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$dest.tmp"
  cp "$dir/manifests/charts/istio-control/istio-discovery/files/injection-template.yaml" "$dest.tmp/"
  cp "$dir/manifests/charts/istio-control/istio-discovery/values.yaml" "$dest.tmp/istio-discovery-values.yaml"
  cp "$dir/tools/packaging/common/envoy_bootstrap.json" "$dest.tmp/envoy_bootstrap_tmpl.json"
  chmod -R u+w "$dest.tmp"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  echo "istio files $ISTIO_VERSION ($COMMIT): copied to $dest"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(pilot-discovery pilot-agent files)
for t in "${targets[@]}"; do
  case $t in
    pilot-discovery) build pilot-discovery pilot/cmd/pilot-discovery vtprotobuf,disable_pgv ;;
    pilot-agent) build pilot-agent pilot/cmd/pilot-agent agent,disable_pgv,grpcnotrace,retrynotrace ;;
    files) files ;;
    *)
      step "target '$t'" "name pilot-discovery, pilot-agent or files"
      exit 2 ;;
  esac
done
