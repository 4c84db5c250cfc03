"""Train any registered router from source specs and save a self-describing router directory."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmroute.data.benchmarks import PUBLIC_BENCHMARKS
from lmroute.registry import get_router_class
from lmroute.routers.base import Router

if TYPE_CHECKING:
    from lmroute.embeddings.base import Embedder


def train_router(
    name: str,
    sources: Sequence[str],
    *,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    exclude_benchmarks: Sequence[str] = (),
    decontaminate: bool = False,
    aliases: Mapping[str, str] | None = None,
    embedder: Embedder | None = None,
    progress: bool = True,
) -> Router:
    """Load ``sources``, optionally decontaminate them, fit router ``name`` and save it to ``out``.

    ``exclude_benchmarks`` drops those benchmarks' gold sources and decontaminates against their
    prompts; ``decontaminate`` alone decontaminates against all public benchmarks. ``aliases``
    renames models (``{"Mixtral-8x7B-Instruct-v0.1": "mistralai/Mixtral-8x7B-Instruct-v0.1"}``),
    so that sources spelling one model differently share it.
    """
    from lmroute.data.prepare import prepare_battles

    cls = get_router_class(name)
    opts = dict(options or {})
    # Built and checked first, so that a bad option (a misspelt embedder or base model too) is
    # refused before minutes of loading and embedding data.
    router = cls.create(opts, embedder)
    router.check_options()
    against = [] if exclude_benchmarks or not decontaminate else list(PUBLIC_BENCHMARKS)
    battles, report = prepare_battles(
        sources,
        data_dir=data_dir,
        exclude_benchmarks=exclude_benchmarks,
        decontaminate_against=against,
        embedder=embedder,
        aliases=aliases,
    )
    _say(report)
    started = time.perf_counter()
    router.fit(battles, progress=progress)
    router.metadata.update(
        {
            "training": {
                "sources": list(sources),
                **({"aliases": dict(aliases)} if aliases else {}),
                "battles": len(battles),
                "report": _jsonable(report),
                "seconds": round(time.perf_counter() - started, 1),
            }
        }
    )
    if out is not None:
        router.save(out)
    return router


def _say(message: Any) -> None:
    print(f"lmroute: {message}", file=sys.stderr)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
