#!/usr/bin/env bash
# Builds the local cluster's binaries from Go modules (once; cached under ~/.cache/detour/bin as
# <component>-<version>) and extracts the Istio and Gateway API CRDs from their modules.
# Usage: scripts/cluster-build.sh [component...]   (default: every tier-1 component and the CRDs)
# Components: etcd kube-apiserver kube-controller-manager kubectl crds (tier 1);
#   kube-scheduler kubelet kube-proxy containerd containerd-shim-runc-v2 ctr coredns pause-image netcheck-image coredns-image node-image (tier 2)
# Each step names itself and its fix when it fails (scripts/steps.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=steps.sh
. "$ROOT/scripts/steps.sh"
# shellcheck source=../tests/cluster/versions.env
. "$ROOT/tests/cluster/versions.env"
CACHE=${DETOUR_CACHE:-$HOME/.cache/detour}
BIN=$CACHE/bin
CRDS=$CACHE/crds
# Other work shares the machine's cores: builds run at low priority.
NICE=${DETOUR_BUILD_NICE:-15}
mkdir -p "$BIN" "$CRDS"

# need_go: Go >= 1.26 on PATH for the components built from Go modules (the images of cached
# binaries need none), fetched by go-env.sh when the machine has none.
need_go() {
  step "Go >= 1.26 (scripts/go-env.sh)" "see its message above"
  # shellcheck source=go-env.sh
  . "$ROOT/scripts/go-env.sh"
}

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
  need_go
  step "build $name $version" "go's output above says why: check that the Go module proxy is reachable (go env GOPROXY), and the free space (df $CACHE)"
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

# install <component> <version> <package@version> [tags] [ldflags]: `go install` of a module that has
# no replace directives (so needs no wrapper module), renamed to <component>-<version>.
install() {
  local name=$1 version=$2 pkg=$3 tags=${4:-} ldflags=${5:-}
  local out=$BIN/$name-$version
  if [[ -x $out ]]; then
    echo "build $name $version: cached ($out)"
    return
  fi
  echo "build $name $version: building (first time only)..."
  need_go
  step "build $name $version" "go's output above says why: check that the Go module proxy is reachable (go env GOPROXY), and the free space (df $CACHE)"
  local t0 gobin
  t0=$(now)
  gobin=$(mktemp -d)
  (cd "$gobin" && nice -n "$NICE" env CGO_ENABLED=0 GOBIN="$gobin" \
    go install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$pkg")
  mv "$gobin/$(basename "${pkg%@*}")" "$out"
  rm -rf "$gobin"
  echo "build $name $version: done in $(took "$t0")"
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
  need_go
  step "crds: istio.io/api v$ISTIO_API_VERSION, gateway-api v$GATEWAY_API_VERSION" "go's output above says why: check that the Go module proxy is reachable (go env GOPROXY), and the free space (df $CACHE)"
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

coredns() {
  install coredns "$COREDNS_VERSION" "github.com/coredns/coredns@v$COREDNS_VERSION" "" \
    "-X github.com/coredns/coredns/coremain.GitCommit=v$COREDNS_VERSION"
}

# binary_image <name> <version> <image ref> <module dir or cached binary> <entrypoint JSON>:
# an OCI image archive holding one static binary at /<name>, for `ctr -n k8s.io images import`.
# Written by hand (tar + JSON): no registry, no image builder.
binary_image() {
  local name=$1 version=$2 ref=$3 source=$4 entrypoint=$5
  local out=$CACHE/images/$name-$version.oci.tar
  if [[ -s $out ]]; then
    echo "image $ref: cached ($out)"
    return
  fi
  if [[ -d $source ]]; then build "$name" "$version" "$source" .; fi
  step "image $ref" "the output above says why; check the free space (df $CACHE)"
  local work
  work=$(mktemp -d)
  mkdir -p "$work/rootfs" "$work/oci/blobs/sha256" "$CACHE/images"
  cp "$BIN/$name-$version" "$work/rootfs/$name"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" "$name"
  oci_image "$work" "$work/layer.tar" "$entrypoint" "$ref" "$out"
  rm -rf "$work"
  echo "image $ref: $out"
}

# node_image: a Node 24 base image (for detour's agent and the sample apps): the node binary that
# scripts/node-env.sh fetched from the npm registry, the glibc libraries it links, a passwd entry and /tmp.
node_image() {
  step "Node 24 for the node image (scripts/node-env.sh)" "see its message above"
  # shellcheck source=node-env.sh
  . "$ROOT/scripts/node-env.sh"
  local node version out work
  node=$(command -v node)
  version=$(node --version | tr -d v)
  out=$CACHE/images/node-$version.oci.tar
  if [[ -s $out ]]; then
    echo "image detour.local/node:$version: cached ($out)"
    return
  fi
  step "image detour.local/node:$version" "the output above says why (ldd, cp of the node binary or its libraries); check the free space (df $CACHE)"
  work=$(mktemp -d)
  mkdir -p "$work/rootfs/usr/local/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/oci/blobs/sha256" "$CACHE/images"
  chmod 1777 "$work/rootfs/tmp"
  cp "$node" "$work/rootfs/usr/local/bin/node"
  ldd "$node" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
    mkdir -p "$work/rootfs$(dirname "$lib")"
    cp -L "$lib" "$work/rootfs$lib"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnode:x:1000:1000:node:/tmp:/sbin/nologin\n' >"$work/rootfs/etc/passwd"
  printf 'root:x:0:\nnode:x:1000:\n' >"$work/rootfs/etc/group"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" .
  oci_image "$work" "$work/layer.tar" '["/usr/local/bin/node"]' "detour.local/node:$version" "$out" 1000:1000
  rm -rf "$work"
  echo "image detour.local/node:$version: $out"
}

# oci_image <work dir> <layer.tar> <entrypoint JSON> <image name> <out.tar> [user]: one-layer OCI archive.
oci_image() {
  local work=$1 layer=$2 entrypoint=$3 name=$4 out=$5 user=${6:-65535:65535}
  local blobs=$work/oci/blobs/sha256 layer_digest layer_size config config_digest manifest manifest_digest
  layer_digest=$(sha256sum "$layer" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$layer")
  cp "$layer" "$blobs/$layer_digest"
  config='{"architecture":"amd64","os":"linux","config":{"Entrypoint":'"$entrypoint"',"User":"'"$user"'"},'
  config+='"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer_digest"'"]}}'
  printf '%s' "$config" >"$work/config.json"
  config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  cp "$work/config.json" "$blobs/$config_digest"
  manifest='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
  manifest+='"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_digest"'","size":'"$(stat -c %s "$work/config.json")"'},'
  manifest+='"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$layer_digest"'","size":'"$layer_size"'}]}'
  printf '%s' "$manifest" >"$work/manifest.json"
  manifest_digest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  cp "$work/manifest.json" "$blobs/$manifest_digest"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$(stat -c %s "$work/manifest.json")" "$name" "${name##*:}" >"$work/oci/index.json"
  tar --numeric-owner --owner=0 --group=0 -C "$work/oci" -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
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
    containerd | containerd-shim-runc-v2 | ctr)
      install "$c" "$CONTAINERD_VERSION" "github.com/containerd/containerd/v2/cmd/$c@v$CONTAINERD_VERSION" \
        no_btrfs,no_devmapper,no_zfs "-X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION" ;;
    coredns) coredns ;;
    pause) build pause "$PAUSE_VERSION" "$ROOT/tests/cluster/build/pause" . ;;
    pause-image)
      binary_image pause "$PAUSE_VERSION" "$PAUSE_IMAGE" "$ROOT/tests/cluster/build/pause" '["/pause"]' ;;
    netcheck-image)
      binary_image netcheck "$NETCHECK_VERSION" "$NETCHECK_IMAGE" "$ROOT/tests/cluster/build/netcheck" '["/netcheck"]' ;;
    node-image) node_image ;;
    coredns-image)
      coredns
      binary_image coredns "$COREDNS_VERSION" "$COREDNS_IMAGE" "" '["/coredns"]' ;;
    *)
      step "component '$c'" "name one of the components listed at the top of scripts/cluster-build.sh"
      exit 2 ;;
  esac
done
