"""lmroute: train, evaluate and serve LLM routers.

Importing this package is cheap: numpy, pydantic and everything heavier (torch, the server,
plots) load on first use of a name that needs them.
"""

from lmroute._version import __version__
from lmroute.exceptions import (
    CheckpointError,
    ConfigError,
    DataError,
    DownloadError,
    InvalidModelNameError,
    LmrouteError,
    MissingDependencyError,
    UnknownModelError,
    UnknownRouterError,
    UnparsableOutputError,
    UpstreamError,
    UpstreamTimeoutError,
    WriteError,
)

__all__ = [
    "AsyncController",
    "CheckpointError",
    "ConfigError",
    "Controller",
    "DataError",
    "DownloadError",
    "EnsembleRouter",
    "InvalidModelNameError",
    "LmrouteError",
    "MissingDependencyError",
    "Router",
    "RouterConfig",
    "UnknownModelError",
    "UnknownRouterError",
    "UnparsableOutputError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "WriteError",
    "__version__",
    "get_router_class",
    "load_router",
    "register_router",
    "router_names",
]

#: Public names imported on first use, so that ``import lmroute`` stays cheap.
_LAZY = {
    "AsyncController": "lmroute.client",
    "Controller": "lmroute.client",
    "EnsembleRouter": "lmroute.ensemble",
    "Router": "lmroute.routers.base",
    "RouterConfig": "lmroute.routers.base",
    "get_router_class": "lmroute.registry",
    "load_router": "lmroute.registry",
    "register_router": "lmroute.registry",
    "router_names": "lmroute.registry",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lmroute' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
