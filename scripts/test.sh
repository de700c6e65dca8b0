#!/usr/bin/env bash
# The test command: type check, lint, unit tests beside each package, integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/node-env.sh
echo "== type check and lint"
npx tsc -p tsconfig.json
npx biome check .
echo "== unit tests"
npm run --silent test:unit
echo "== integration tests"
npm run --silent test:integration
