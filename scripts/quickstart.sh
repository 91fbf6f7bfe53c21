#!/usr/bin/env bash
# One command on a fresh Debian machine with Node.js 20: install, build, run
# the quickstart recipe (local disk only, no server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
exec npx tsx examples/quickstart.ts "$@"
