#!/usr/bin/env bash
# Prints the path of a virtual environment made from a pinned requirements file, creating it
# the first time (once per version of that file, under ~/.cache/emostream).
#
#   scripts/python-env.sh REQUIREMENTS NAME
set -euo pipefail

requirements=$1
name=$2
cache=${EMOSTREAM_CACHE:-$HOME/.cache/emostream}
venv=$cache/venv-$name-$(sha256sum "$requirements" | cut -c1-12)
mkdir -p "$cache"
# One maker at a time (tests start in parallel); the others wait and find it made.
exec 9> "$venv.lock"
flock 9
# Made in place (an environment's scripts name its path), complete once the marker is there.
if [ ! -f "$venv/.complete" ]; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "Installing python3-venv (Debian package)." >&2
    apt-get update -qq >&2
    apt-get install -y -qq python3-venv >&2
  fi
  echo "Creating the $name virtual environment in $venv." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  touch "$venv/.complete"
fi
echo "$venv"
