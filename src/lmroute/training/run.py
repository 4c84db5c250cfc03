"""Train any registered router from source specs and save a self-describing router directory."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmroute.data.benchmarks import PUBLIC_BENCHMARKS, load_benchmark
from lmroute.exceptions import DataError
from lmroute.registry import get_router_class
from lmroute.routers.base import Router


def train_router(
    name: str,
    sources: Sequence[str],
    *,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    exclude_benchmarks: Sequence[str] = (),
    decontaminate: bool = False,
    embedder: Any = None,
    progress: bool = True,
) -> Router:
    """Load ``sources``, optionally decontaminate them, fit router ``name`` and save it to ``out``.

    ``exclude_benchmarks`` drops those benchmarks' gold sources and decontaminates against their
    prompts; ``decontaminate`` alone decontaminates against all public benchmarks.
    """
    from lmroute.data.decontaminate import decontaminate as drop_near_duplicates
    from lmroute.data.sources import load_sources
    from lmroute.evaluation.experiment import is_own_gold

    cls = get_router_class(name)
    excluded = [b.lower().replace("_", "-") for b in exclude_benchmarks]
    specs = [s for s in sources if not any(is_own_gold(s, b) for b in excluded)]
    if not specs:
        raise DataError("no training sources left after --exclude-benchmark")
    battles, report = load_sources(specs, data_dir=data_dir)
    _say(report)
    against = excluded or (list(PUBLIC_BENCHMARKS) if decontaminate else [])
    removed: dict[str, Any] = {}
    for bench_name in against:
        bench = load_benchmark(bench_name, data_dir=data_dir)
        battles, removed[bench_name] = drop_near_duplicates(battles, bench.prompts, embedder=embedder)
        _say(f"decontaminated against {bench_name}: {removed[bench_name]}")
    if not battles:
        raise DataError("no training battles left after filtering")
    opts = dict(options or {})
    router = cls(opts, embedder=embedder) if embedder is not None else cls(opts)
    started = time.perf_counter()
    router.fit(battles, progress=progress)
    router.metadata.update({
        "training": {
            "sources": list(specs),
            "battles": len(battles),
            "report": _jsonable(report),
            "decontaminated_against": {k: _jsonable(v) for k, v in removed.items()},
            "seconds": round(time.perf_counter() - started, 1),
        }
    })  # fmt: skip
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
