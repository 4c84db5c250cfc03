"""Router names to router classes, imported lazily so that naming a router costs nothing."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lmroute.exceptions import CheckpointError, ConfigError, LmrouteError, UnknownRouterError
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
    """Register a router class, or a ``"module:Class"`` string imported on first use.

    Registering a name again with the same class does nothing; a name already taken by another
    router, a target that is not a Router class or a ``"module:Class"`` string, or an empty name
    is a ConfigError (a silent replacement would change what every ``load_router(name)`` gives).
    A class may be registered under a second name (an alias) once its own ``name`` is registered to
    it, as a router it saves is loaded back by that ``name`` (checked on import for a string).
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a router name must be a non-empty string, got {name!r}")
    if isinstance(target, str):
        module, colon, attr = target.partition(":")
        if not (colon and module and attr):
            raise ConfigError(f"router {name!r}: target {target!r} is not of the form 'module:Class'")
    elif not (isinstance(target, type) and issubclass(target, Router)):
        raise ConfigError(f"router {name!r}: {target!r} is not a subclass of lmroute.Router")
    current = _ROUTERS.get(name)
    if current is not None and _target_name(current) != _target_name(target):
        raise ConfigError(
            f"router name {name!r} is already registered ({_target_name(current)}); "
            "register the new router under another name"
        )
    if not isinstance(target, str):
        _check_own_name(name, target)
    _ROUTERS[name] = target


def _target_name(target: str | type[Router]) -> str:
    """A registration target as ``"module:Class"``: a class and the string that imports it agree."""
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def router_names() -> list[str]:
    """Names of all registered routers."""
    return sorted(_ROUTERS)


def get_router_class(name: str) -> type[Router]:
    """The router class registered under ``name``; ConfigError if a ``"module:Class"`` string
    registered for it does not import a Router class."""
    try:
        target = _ROUTERS[name]
    except KeyError:
        raise UnknownRouterError(
            f"unknown router {name!r}; known routers: {', '.join(router_names())}"
        ) from None
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        try:
            found = getattr(importlib.import_module(module), attr)
        except LmrouteError:
            raise  # e.g. a MissingDependencyError that names the extra to install
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"router {name!r} is registered as {target!r}, which cannot be imported: {exc}"
            ) from exc
        if not (isinstance(found, type) and issubclass(found, Router)):
            raise ConfigError(f"router {name!r} is registered as {target!r}, which is not a Router class")
        _check_own_name(name, found)
        target = found
        _ROUTERS[name] = target
    return target


def _check_own_name(name: str, cls: type[Router]) -> None:
    """ConfigError unless ``cls.name``, the kind a saved router records and :func:`load_router` reads
    back, is ``name`` or registered to ``cls``: else what it saves would not load (a class that
    kept the base's ``name``) or would load as another router (a subclass of mf that kept "mf")."""
    if cls.name == name:
        return
    try:
        own: type[Router] | None = get_router_class(cls.name)
    except UnknownRouterError:
        own = None
    if own is not cls:
        outcome = "would not load" if own is None else f"would load as {_target_name(own)}"
        raise ConfigError(
            f"router {name!r}: {_target_name(cls)} has name = {cls.name!r}, the kind a router it saves "
            f"records, so that router {outcome}; set name = {name!r} in the class"
        )


def check_router_spec(spec: str | Path) -> None:
    """UnknownRouterError when :func:`load_router` would take ``spec`` for a router name and none
    is registered under it; checked without importing or loading anything, for a router loaded
    elsewhere (on a Ray cluster's nodes, whose files and packages this machine may lack)."""
    path = Path(spec)
    if not (path.exists() or "/" in str(spec) or str(spec) in _ROUTERS):
        _class_or_directory(str(spec))  # raises the error load_router would


def load_router(spec: str | Path, **options: Any) -> Router:
    """A router from a registered name (its shipped default) or a saved router directory."""
    if not isinstance(spec, (str, Path)):
        raise ConfigError(f"load_router() takes a router name or directory, got {type(spec).__name__}")
    path = Path(spec)
    # Path("") is the working directory: an empty name (an unset variable) must not load it.
    named = spec != ""
    if named and (path / CONFIG_FILE).is_file():
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
    if named and (path.exists() or "/" in str(spec)):
        raise UnknownRouterError(f"{spec} is not a router directory (no {CONFIG_FILE} in it)")
    return _class_or_directory(str(spec)).pretrained(**options)


def _class_or_directory(name: str) -> type[Router]:
    """:func:`get_router_class` for a spec that may also name a saved directory, which an unknown
    name's error suggests (elsewhere, as for ``lmroute train``, only a router kind will do)."""
    try:
        return get_router_class(name)
    except UnknownRouterError as exc:
        raise UnknownRouterError(f"{exc} (or give the path of a saved router directory)") from None


def report_name(spec: str | Path, router: Router) -> str:
    """The name results tables give a router loaded from ``spec``: a saved directory's path, so
    two saved routers of one kind stay apart; a registered name's router by its own name."""
    return str(spec) if Path(spec).is_dir() else router.name


def serving_name(spec: str | Path, router: Router) -> str:
    """The name a router loaded from ``spec`` is served under when no alias is given (the
    ``<router>`` of ``router-<router>-<threshold>``): a saved directory by the router saved in it,
    a registered name as given."""
    return router.name if Path(spec).is_dir() else str(spec)
