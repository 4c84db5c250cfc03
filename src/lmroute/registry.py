"""Router names to router classes, imported lazily so that naming a router costs nothing."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lmroute.exceptions import CheckpointError, ConfigError, UnknownRouterError
from lmroute.routers.base import CONFIG_FILE, Router, read_manifest

_ROUTERS: dict[str, str | type[Router]] = {
    "random": "lmroute.routers.random:RandomRouter",
    "length": "lmroute.routers.length:LengthRouter",
    "mf": "lmroute.routers.mf:MFRouter",
    "sw_ranking": "lmroute.routers.sw_ranking:SWRankingRouter",
    "bert": "lmroute.routers.bert:BertRouter",
    "causal_llm": "lmroute.routers.causal_llm:CausalLLMRouter",
    "ensemble": "lmroute.ensemble:EnsembleRouter",
}


def register_router(name: str, target: str | type[Router]) -> None:
    """Register a router class, or a ``"module:Class"`` string imported on first use."""
    _ROUTERS[name] = target


def router_names() -> list[str]:
    """Names of all registered routers."""
    return sorted(_ROUTERS)


def get_router_class(name: str) -> type[Router]:
    """The router class registered under ``name``."""
    try:
        target = _ROUTERS[name]
    except KeyError:
        raise UnknownRouterError(
            f"unknown router {name!r}; known routers: {', '.join(router_names())} "
            "(or give the path of a saved router directory)"
        ) from None
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
        _ROUTERS[name] = target
    return target


def load_router(spec: str | Path, **options: Any) -> Router:
    """A router from a registered name (its shipped default) or a saved router directory."""
    path = Path(spec)
    if (path / CONFIG_FILE).is_file():
        if options:
            raise ConfigError("options cannot be applied to a saved router directory")
        name = read_manifest(path)["router"]
        if name not in _ROUTERS:
            raise CheckpointError(
                f"{path} holds a {name!r} router, which this lmroute does not know (known: "
                f"{', '.join(router_names())}); upgrade lmroute or register_router() it first"
            )
        return get_router_class(name).load(path)
    if isinstance(spec, str) and spec in _ROUTERS:
        return get_router_class(spec).pretrained(**options)
    if path.exists() or "/" in str(spec):
        raise UnknownRouterError(f"{spec} is not a router directory (no {CONFIG_FILE} in it)")
    return get_router_class(str(spec)).pretrained(**options)


def report_name(spec: str | Path, router: Router) -> str:
    """The name results tables give a router loaded from ``spec``: a saved directory's path, so
    two saved routers of one kind stay apart; a registered name's router by its own name."""
    return str(spec) if Path(spec).is_dir() else router.name


def serving_name(spec: str | Path, router: Router) -> str:
    """The name a router loaded from ``spec`` is served under when no alias is given (the
    ``<router>`` of ``router-<router>-<threshold>``): a saved directory by the router saved in it,
    a registered name as given."""
    return router.name if Path(spec).is_dir() else str(spec)
