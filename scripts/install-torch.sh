#!/usr/bin/env bash
# Install torch 2.13.0, the CPU build, into the active virtual environment.
#
# PyPI's torch for Linux is the CUDA build, with several GB of NVIDIA libraries; PyTorch's own index
# of CPU wheels has the CPU build. The conventional command, which this script runs:
#     pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# A machine where pip already finds the CPU wheel without any index (a wheelhouse in pip's
# find-links, as on this project's machines) installs that one instead and never asks an index.
#
#   LMROUTE_TORCH_INDEX   the index to take torch from (default: PyTorch's CPU index);
#                         "pip" uses pip's own configuration (e.g. a mirror of PyTorch's index)
#   PYTHON                interpreter to install into (default: `python` on PATH, the active venv)
set -euo pipefail

VERSION="2.13.0"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
INDEX="${LMROUTE_TORCH_INDEX:-$CPU_INDEX}"
PY="${PYTHON:-python}"
log() { printf '[install-torch] %s\n' "$*" >&2; }

# The CPU wheel where pip finds it without an index (--no-index keeps --find-links): no network.
if "$PY" -m pip install -q --dry-run --no-index --no-deps "torch==$VERSION+cpu" >/dev/null 2>&1; then
    log "torch $VERSION+cpu is installed, or found without an index: installing it from there"
    exec "$PY" -m pip install -q "torch==$VERSION+cpu"
fi
if [ "$INDEX" = "pip" ]; then
    log "torch $VERSION from pip's configured indexes"
    exec "$PY" -m pip install -q "torch==$VERSION"
fi
log "torch $VERSION (CPU) from $INDEX"
exec "$PY" -m pip install -q "torch==$VERSION" --index-url "$INDEX"
