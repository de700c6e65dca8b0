#!/usr/bin/env bash
# Images for the sample system and the detour agent, on top of the Node base image
# (detour.local/node:<node version>, `scripts/cluster-build.sh node-image`), as OCI archives in
# ~/.cache/detour/images (containerd imports every *.tar there when the node starts; mesh.ts imports
# them into a running node). Two layers: the base image's own layer blob, reused as it is, and one
# layer with the app. No registry, no image builder: tar + JSON, like cluster-build.sh's oci_image.
#   detour.local/sample:dev   /app/{hop,frontend,orders,payments,caller,loop}.ts  (node /app/<name>.ts)
#   detour.local/agent:dev    /app/agent/main.mjs (+ chunks): the esbuild bundle of agent/src/main.ts,
#                             files and config read from agent/Containerfile (the image a team builds)
# Usage: tests/cluster/sample/build-images.sh [sample] [agent]   (default both; always rebuilt, ~2 s)
# Each step names itself and its fix when it fails (scripts/steps.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
CACHE=${DETOUR_CACHE:-$HOME/.cache/detour}
# shellcheck source=../../../scripts/steps.sh
. "$ROOT/scripts/steps.sh"
step "Node 24 (scripts/node-env.sh)" "see its message above"
# shellcheck source=../../../scripts/node-env.sh
. "$ROOT/scripts/node-env.sh"
NODE_VERSION=$(node --version | tr -d v)
BASE=$CACHE/images/node-$NODE_VERSION.oci.tar
step "the base image detour.local/node:$NODE_VERSION (scripts/cluster-build.sh node-image)" \
  "see cluster-build's message above"
[[ -s $BASE ]] || bash "$ROOT/scripts/cluster-build.sh" node-image

# json <file> <expression over `j`>: one value out of a JSON file (node, not jq: always present here).
json() { node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(eval(process.argv[2]))' "$1" "$2"; }

# image <name> <ref> <app rootfs dir> <image config JSON>: base layer + app layer -> $CACHE/images/<name>.oci.tar
image() {
  local name=$1 ref=$2 app=$3 image_config=$4
  local work out=$CACHE/images/$name.oci.tar
  step "image $ref" "the output above says why; check the free space (df $CACHE), or remove $BASE to rebuild the base"
  work=$(mktemp -d)
  mkdir -p "$work/base" "$work/oci/blobs/sha256"
  tar -xf "$BASE" -C "$work/base"
  local base_manifest base_layer app_layer app_size base_size config config_digest manifest manifest_digest
  base_manifest=$(json "$work/base/index.json" 'j.manifests[0].digest.slice(7)')
  base_layer=$(json "$work/base/blobs/sha256/$base_manifest" 'j.layers[0].digest.slice(7)')
  base_size=$(stat -c %s "$work/base/blobs/sha256/$base_layer")
  cp "$work/base/blobs/sha256/$base_layer" "$work/oci/blobs/sha256/"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name --mode='a+rX,go-w' -C "$app" -cf "$work/app.tar" .
  app_layer=$(sha256sum "$work/app.tar" | cut -d' ' -f1)
  app_size=$(stat -c %s "$work/app.tar")
  mv "$work/app.tar" "$work/oci/blobs/sha256/$app_layer"
  # Uncompressed layers: each diff_id is the layer's own digest.
  config='{"architecture":"amd64","os":"linux","config":'"$image_config"','
  config+='"rootfs":{"type":"layers","diff_ids":["sha256:'"$base_layer"'","sha256:'"$app_layer"'"]}}'
  printf '%s' "$config" >"$work/config.json"
  config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  cp "$work/config.json" "$work/oci/blobs/sha256/$config_digest"
  manifest='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
  manifest+='"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_digest"'","size":'"$(stat -c %s "$work/config.json")"'},'
  manifest+='"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$base_layer"'","size":'"$base_size"'},'
  manifest+='{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$app_layer"'","size":'"$app_size"'}]}'
  printf '%s' "$manifest" >"$work/manifest.json"
  manifest_digest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  cp "$work/manifest.json" "$work/oci/blobs/sha256/$manifest_digest"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$(stat -c %s "$work/manifest.json")" "$ref" "${ref##*:}" >"$work/oci/index.json"
  tar --numeric-owner --owner=0 --group=0 -C "$work/oci" -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
  rm -rf "$work"
  echo "image $ref: $out (manifest sha256:$manifest_digest)"
}

sample() {
  local app
  app=$(mktemp -d)
  mkdir -p "$app/app"
  cp "$HERE"/{hop,frontend,orders,payments,caller,loop}.ts "$app/app/"
  printf '{"type":"module"}\n' >"$app/app/package.json"
  image sample detour.local/sample:dev "$app" \
    '{"Entrypoint":["/usr/local/bin/node"],"User":"1000:1000","WorkingDir":"/app","Env":["NODE_ENV=production"]}'
  rm -rf "$app"
}

# The agent as agent/Containerfile builds it: its final stage's files and config (containerfile.ts).
agent() {
  local app config
  app=$(mktemp -d)
  step "the agent bundle (npm run build:agent)" "esbuild's message above names the file; npm install if esbuild is missing"
  (cd "$ROOT" && npm run -s build:agent)
  step "the agent's files and config from agent/Containerfile" "containerfile.ts's message above names the line"
  config=$(node "$HERE/containerfile.ts" "$ROOT/agent/Containerfile" "$ROOT" "$app")
  image agent detour.local/agent:dev "$app" "$config"
  rm -rf "$app"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(sample agent)
for t in "${targets[@]}"; do
  case $t in
    sample) sample ;;
    agent) agent ;;
    *)
      step "image '$t'" "name sample or agent"
      exit 2 ;;
  esac
done
