#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, then run the default test suite.
# Usage: bash scripts/test.sh [extra pytest arguments]   (LMROUTE_DATA_DIR: the shared data folder)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LMROUTE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
# torch first, pinned, the CPU build (from PyTorch's CPU index, or a local wheel: see the script);
# PyPI's torch is the multi-GB CUDA build.
bash scripts/install-torch.sh
python -m pip install -q -e ".[test]"
# Real llama.cpp servers for the llm tests: a cached wheel, or a first build of about 5-12 minutes.
bash .ci/install-llama.sh
# Debian's Chromium for the web console's browser tests, when it is missing.
bash .ci/install-chromium.sh
export LMROUTE_DATA_DIR="${LMROUTE_DATA_DIR:-$(cd .. && pwd)/shared/data}"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
python -m mypy
python -m pytest -q "$@"
