#!/usr/bin/env bash
# The cluster demo: detour on the local Kubernetes cluster with Istio (tests/cluster, tier 3 on tier 2).
# Starts the mesh if needed (building what is missing: Istio ~20 min cold, the rest is cached), deploys
# the sample system in `staging`, runs `detour exec --target deploy/orders -n staging --header
# x-dev=dev-a ...` as the developer and checks that x-dev: dev-a reaches the local orders app and
# everything else the real pods, and that the VirtualService is as before once the CLI exits.
# Stops the mesh again if it started it. Needs root (network namespace, containerd, kubelet).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck source=node-env.sh
. scripts/node-env.sh
node tests/demo/cluster-demo.ts
