#!/usr/bin/env bash
# Builds and tests the client library (clients/js): installs its pinned tools from the lock
# file when missing, type-checks the sources, builds the module, type-checks the README's
# example against the built package, runs its tests, and checks that the broadcaster serves
# this build (broadcast/web/emostream.js). With --write, copies the build there instead.
set -euo pipefail
cd "$(dirname "$0")/../clients/js"

command -v npm >/dev/null || { echo "error: npm not found: install Node.js 20 or later" >&2; exit 1; }
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --silent >&2
fi
npm run --silent check
npm run --silent build
# The README's example against the package as published: its exports and declarations.
npm run --silent check-example
npm test

served=../../broadcast/web/emostream.js
if [ "${1:-}" = "--write" ]; then
  cp dist/emostream.js "$served"
  echo "wrote $served"
elif ! cmp -s dist/emostream.js "$served"; then
  echo "error: broadcast/web/emostream.js is not the build of clients/js: run make clients-build and commit it" >&2
  exit 1
fi
