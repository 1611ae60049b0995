#!/usr/bin/env bash
# Installs what the browser test needs, skipping what is there: Debian's Chromium (and a
# colour emoji font, so screenshots show emojis) and playwright-core from npm.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  echo "Installing Chromium and the colour emoji font (Debian packages)." >&2
  apt-get update -qq >&2
  apt-get install -y -qq chromium fonts-noto-color-emoji >&2
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm install --no-audit --no-fund --silent >&2)
fi
