#!/usr/bin/env bash
# Runs the notebooks top to bottom, headless, in a virtual environment made from
# notebooks/requirements.txt (scripts/python-env.sh).
# Figures go to target/notebooks/figures, or to EMOSTREAM_FIGURES (make figures: the
# committed notebooks/figures).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$(scripts/python-env.sh notebooks/requirements.txt notebooks)

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
