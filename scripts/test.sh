#!/usr/bin/env bash
# The test command: set-up, type check, lint, unit tests beside each package, integration tests in
# network namespaces (real processes, real clients of several runtimes), and the tests against the
# local cluster (built from Go modules on first use, cached under ~/.cache/detour).
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests run system tools that live in /usr/sbin (runuser for PostgreSQL, sysctl in the node's
# namespace), which a user's non-login PATH may lack, as setup.sh does for its own.
PATH="$PATH:/usr/sbin:/sbin"
bash scripts/setup.sh
# shellcheck source=node-env.sh
. scripts/node-env.sh
# shellcheck source=go-env.sh
. scripts/go-env.sh

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "type check and lint"
npx tsc -p tsconfig.json
npx biome check .

step "unit tests"
npm run --silent test:unit

step "integration tests"
npm run --silent test:integration

step "local cluster with its node, and the mesh's binaries (built on first use)"
# Tier 2 (a node running pods) is part of the suite: its tests run, never skip.
export DETOUR_CLUSTER_TIER=2
started_cluster=0
node tests/cluster/cli.ts status >/dev/null 2>&1 || started_cluster=1
# Set before `up`: a start that fails half-way must not leave its components running either.
# mesh.ts down: istiod and its relays (started by the e2e) too, then the cluster.
if [ "$started_cluster" = 1 ]; then trap 'node tests/cluster/mesh.ts down || true' EXIT; fi
# Started without /usr/sbin and /sbin on PATH, as from a non-login shell (what `npm run demo` meets):
# the harness must find its system tools itself.
PATH="$(printf %s "$PATH" | tr ':' '\n' | grep -v sbin | paste -sd:)" node tests/cluster/cli.ts up --tier=2
bash tests/cluster/build/istio/build.sh
bash tests/cluster/build/istio/proxy-image.sh

step "cluster tests"
npm run --silent test:cluster

step "end to end: detour on the cluster with Istio sidecars (sample system in staging)"
npm run --silent test:e2e
