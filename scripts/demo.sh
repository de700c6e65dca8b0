#!/usr/bin/env bash
# `npm run demo:local`: agent, CLI and sample apps in three network
# namespaces on this machine; a request with `x-dev: dev-a` is answered by the local app, one
# without it by the remote app. Needs root (network namespaces). Exits 0 only if both are right.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck source=node-env.sh
. scripts/node-env.sh
# The demo tears down itself; this catches what a killed demo left behind.
trap 'node tests/demo/sweep.ts || true' EXIT
node tests/demo/demo.ts
