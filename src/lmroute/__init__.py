"""lmroute: train, evaluate and serve LLM routers.

Importing this package is cheap: heavy parts (torch, the server, plots) load when used.
"""

from lmroute._version import __version__
from lmroute.exceptions import (
    CheckpointError,
    ConfigError,
    DataError,
    DownloadError,
    InvalidModelNameError,
    LmrouteError,
    UnknownModelError,
    UnknownRouterError,
    UpstreamError,
    UpstreamTimeoutError,
)
from lmroute.registry import get_router_class, load_router, register_router, router_names
from lmroute.routers.base import Router, RouterConfig

__all__ = [
    "AsyncController",
    "CheckpointError",
    "ConfigError",
    "Controller",
    "DataError",
    "DownloadError",
    "InvalidModelNameError",
    "LmrouteError",
    "Router",
    "RouterConfig",
    "UnknownModelError",
    "UnknownRouterError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "__version__",
    "get_router_class",
    "load_router",
    "register_router",
    "router_names",
]

#: Public names imported on first use, so that ``import lmroute`` stays cheap.
_LAZY = {"AsyncController": "lmroute.client", "Controller": "lmroute.client"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lmroute' has no attribute {name!r}")
