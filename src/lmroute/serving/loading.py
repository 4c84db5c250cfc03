"""The routers a server or Controller serves, loaded by name or from directories."""

from __future__ import annotations

from collections.abc import Container, Sequence
from pathlib import Path

from lmroute.control.taps import EmbeddingSummaries
from lmroute.exceptions import ConfigError, InvalidModelNameError
from lmroute.routers.base import Router, read_manifest
from lmroute.routing_names import check_router_name


def load_routers(
    specs: Sequence[str | Path], *, summaries: EmbeddingSummaries | None = None
) -> dict[str, Router]:
    """Routers by serving name from ``name``, ``directory`` or ``alias=directory`` specs.

    A directory is served under the name of the router saved in it unless an alias is given. With
    ``summaries``, the embedders given to the routers record the embedding summaries that drift
    detection compares (:mod:`lmroute.control.taps`).
    """
    from lmroute.registry import load_router

    routers: dict[str, Router] = {}
    for spec in specs:
        alias, sep, path = str(spec).partition("=")
        router = load_router(path if sep else alias)
        name = alias if sep else (router.name if Path(alias).is_dir() else alias)
        if not name or "/" in name:
            raise ConfigError(f"router spec {spec!r}: give a name as NAME=DIRECTORY")
        try:
            # served under a name no request could ask for ("x-share" reads as router x's share mode)
            check_router_name(name)
        except InvalidModelNameError as exc:
            raise ConfigError(f"router spec {spec!r}: {exc}") from None
        _check_name_unused(name, routers)
        routers[name] = _without_embedding_cache(router, summaries)
    return routers


def served_names(specs: Sequence[str | Path]) -> list[str] | None:
    """The names :func:`load_routers` serves ``specs`` under, found without loading a router; None
    when a spec names a directory not on this machine (a Ray cluster's nodes may hold it), whose
    name is that of the router saved in it. ConfigError for two routers of one name (of those known),
    as :func:`load_routers`."""
    names: list[str] = []
    unknown = False
    for spec in specs:
        alias, sep, _ = str(spec).partition("=")
        if sep or not ("/" in alias or Path(alias).is_dir()):
            name = alias
        elif held_here(alias):
            name = read_manifest(alias)["router"]  # what the router loaded from it is named
        else:
            unknown = True
            continue
        _check_name_unused(name, names)
        names.append(name)
    return None if unknown else names


def held_here(spec: str | Path) -> bool:
    """False when ``spec`` (``[NAME=]DIRECTORY`` or a router name) names a directory that is not on
    this machine (a Ray cluster's nodes may hold it)."""
    path = str(spec).partition("=")[2] or str(spec)
    return not ("/" in path and not Path(path).is_dir())


def _check_name_unused(name: str, served: Container[str]) -> None:
    """ConfigError when ``name`` is already ``served``: the later router would replace the first."""
    if name in served:
        raise ConfigError(f"two routers are named {name!r}: give one a name with NAME=DIRECTORY")


def _without_embedding_cache(router: Router, summaries: EmbeddingSummaries | None = None) -> Router:
    """A freshly loaded embedding router, given its embedder without the disk cache, behind a
    bounded in-memory LRU cache (tapped by ``summaries``, which so see every prompt, repeated or not).

    A server sees mostly distinct prompts, each embedded once: through the disk cache every one would
    add a vector to the process's memory and files to disk for as long as the server runs (the load
    test measured +38 MiB per 8,000 requests), and the cache's upkeep grows with it.
    """
    name = router.embedder_name
    if name is not None:
        from lmroute.embeddings import get_embedder
        from lmroute.embeddings.memory import LruEmbedder

        # Repeated prompts (a system prompt, a retried question) are embedded once, in memory.
        embedder = LruEmbedder(get_embedder(name, cache=False))
        router.use_embedder(summaries.tap(embedder) if summaries is not None else embedder)
    return router
