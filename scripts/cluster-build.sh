#!/usr/bin/env bash
# Builds the local cluster's binaries from Go modules (once; cached under ~/.cache/detour/bin as
# <component>-<version>) and extracts the Istio and Gateway API CRDs from their modules.
# Usage: scripts/cluster-build.sh [component...]   (default: every tier-1 component and the CRDs)
# Components: etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy crds
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tests/cluster/versions.env
. "$ROOT/tests/cluster/versions.env"
CACHE=${DETOUR_CACHE:-$HOME/.cache/detour}
BIN=$CACHE/bin
CRDS=$CACHE/crds
# Other work shares the machine's cores: builds run at low priority.
NICE=${DETOUR_BUILD_NICE:-15}
mkdir -p "$BIN" "$CRDS"

if ! command -v go >/dev/null; then
  echo "cluster-build: 'go' is not on PATH. Install Go >= 1.24 (the cluster is built from Go modules)." >&2
  exit 1
fi

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# build <component> <version> <module dir> <package> [ldflags]
build() {
  local name=$1 version=$2 dir=$3 pkg=$4 ldflags=${5:-}
  local out=$BIN/$name-$version
  if [[ -x $out ]]; then
    echo "build $name $version: cached ($out)"
    return
  fi
  echo "build $name $version: building (first time only; several minutes)..."
  local t0
  t0=$(now)
  (cd "$dir" && nice -n "$NICE" env CGO_ENABLED=0 GOFLAGS=-mod=mod \
    go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "build $name $version: done in $(took "$t0")"
}

k8s_ldflags() {
  local v=v$KUBERNETES_VERSION major minor date flags=""
  major=${KUBERNETES_VERSION%%.*}
  minor=${KUBERNETES_VERSION#*.}
  minor=${minor%%.*}
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    flags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  echo "$flags"
}

# moddir <module@version>: downloads a module into the module cache and prints its directory.
moddir() {
  (cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "$1") |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

crds() {
  local istio=$CRDS/istio-api-$ISTIO_API_VERSION.yaml gw=$CRDS/gateway-api-$GATEWAY_API_VERSION-standard.yaml
  if [[ -s $istio && -s $gw ]]; then
    echo "crds: cached ($CRDS)"
    return
  fi
  local t0 dir
  t0=$(now)
  dir=$(moddir "istio.io/api@v$ISTIO_API_VERSION")
  cp "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$istio.tmp"
  mv "$istio.tmp" "$istio"
  dir=$(moddir "sigs.k8s.io/gateway-api@v$GATEWAY_API_VERSION")
  : >"$gw.tmp"
  for f in "$dir"/config/crd/standard/*.yaml; do
    { echo "---"; cat "$f"; } >>"$gw.tmp"
  done
  mv "$gw.tmp" "$gw"
  echo "crds: istio.io/api v$ISTIO_API_VERSION, gateway-api v$GATEWAY_API_VERSION extracted in $(took "$t0")"
}

components=("$@")
if [[ ${#components[@]} -eq 0 ]]; then
  components=(etcd kube-apiserver kube-controller-manager kubectl crds)
fi
K8S_DIR=$ROOT/tests/cluster/build/kubernetes
for c in "${components[@]}"; do
  case $c in
    etcd) build etcd "$ETCD_VERSION" "$ROOT/tests/cluster/build/etcd" . ;;
    kube-apiserver | kube-controller-manager | kubectl | kube-scheduler | kubelet | kube-proxy)
      build "$c" "$KUBERNETES_VERSION" "$K8S_DIR" "k8s.io/kubernetes/cmd/$c" "$(k8s_ldflags)" ;;
    crds) crds ;;
    *) echo "cluster-build: unknown component '$c'" >&2; exit 2 ;;
  esac
done
