#!/usr/bin/env bash
# Runs the notebooks top to bottom, headless, in a virtual environment made from
# notebooks/requirements.txt (once per version of that file, under ~/.cache/emostream).
# Figures go to target/notebooks/figures, or to EMOSTREAM_FIGURES (make figures: the
# committed notebooks/figures).
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${EMOSTREAM_CACHE:-$HOME/.cache/emostream}
venv=$cache/venv-notebooks-$(sha256sum notebooks/requirements.txt | cut -c1-12)
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating the notebooks' virtual environment in $venv." >&2
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check -r notebooks/requirements.txt
  mv "$venv.tmp" "$venv"
fi

# The replay output the match timeline plots: a generated match through the dataflow.
bin=${EMOSTREAM_BIN:-target/debug/emostream}
mkdir -p target/notebooks
if [ ! -f target/notebooks/match-windows.csv ]; then
  "$bin" generate --events 300000 --users 20000 --rate 1000/s --profile match --seed 7 \
    --out target/notebooks/match.csv 2>/dev/null
  "$bin" replay target/notebooks/match.csv --out target/notebooks/match-windows.csv 2>/dev/null
fi

export EMOSTREAM_FIGURES=${EMOSTREAM_FIGURES:-$PWD/target/notebooks/figures}
export MPLBACKEND=Agg
# The kernel's note that it listens on local TCP ports is not news.
"$venv/bin/python" scripts/run_notebooks.py notebooks/*.ipynb 2> >(grep -v "Kernel is running over TCP" >&2)
