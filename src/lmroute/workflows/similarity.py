"""``lmroute data similarity``: how much a benchmark or a prompt file looks like training data.

The prompts are a public benchmark (``mmlu``, ``gsm8k``, ``mt-bench``: the prompts a router sees,
MT-Bench's first turns) or a file (JSONL with a ``prompt`` field, which custom benchmark files
have; a CSV with a ``prompt`` column; or text, one prompt a line). The training data is given as
source specs (as ``lmroute train --data`` takes them) or as a trained router, whose recorded
sources are used as it used them: without the gold it left out, decontaminated as it was.
The figures themselves are :func:`lmroute.data.similarity.similarity_report`'s.

:func:`similarity_vs_apgr` asks whether the score predicts a router's APGR across the sources of a
leave-one-source-out run (each source's similarity to the others against the APGR on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmroute.data.benchmarks import PUBLIC_BENCHMARKS, load_benchmark
from lmroute.data.similarity import DEFAULT_CUTS, SimilarityReport, check_cuts, similarity_report
from lmroute.exceptions import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    from lmroute.embeddings.base import Embedder
    from lmroute.evaluation.correlation import Correlation


def read_prompt_set(target: str, *, data_dir: str | Path | None = None) -> tuple[str, list[str]]:
    """The name and prompts of a public benchmark or of a prompt or benchmark file."""
    path = _prompt_file(target)
    if path is None:
        bench = load_benchmark(_benchmark_key(target), data_dir=data_dir)
        return bench.name, list(bench.prompts)
    from lmroute.data.prompts import read_prompts

    return str(target), read_prompts(path)


def _prompt_file(target: str) -> Path | None:
    """The prompt file ``target`` names; None for a public benchmark."""
    if _benchmark_key(target) in PUBLIC_BENCHMARKS:
        return None
    path = Path(target).expanduser()
    if not path.exists():
        raise DataError(
            f"{target!r} is neither a benchmark ({', '.join(PUBLIC_BENCHMARKS)}) nor an existing "
            "prompt file (.jsonl with a 'prompt' field, .csv with a 'prompt' column, or text)"
        )
    return path


def _benchmark_key(target: str) -> str:
    return str(target).strip().lower().replace("_", "-")


def training_prompts(
    against: Sequence[str], *, data_dir: str | Path | None = None, embedder: Embedder | None = None
) -> dict[str, list[str]]:
    """Source label -> the distinct training prompts of that source, for every source spec and
    every source recorded by a router (a registered name or a saved directory) in ``against``.

    A router's sources are prepared as its training prepared them; ``embedder`` finds the near
    duplicates its decontamination dropped.
    """
    return _read_training(_training_plan(against, data_dir=data_dir), data_dir=data_dir, embedder=embedder)


#: What :func:`training_prompts` reads: (label, source spec, benchmarks to decontaminate against).
_Plan = list[tuple[str, str, list[str]]]


def _training_plan(against: Sequence[str], *, data_dir: str | Path | None) -> _Plan:
    """The sources of ``against``, each one's file found (else its error) without reading any."""
    from lmroute.data.sources import check_sources

    if not against:
        raise ConfigError("no training data to compare with: give source specs or a trained router")
    plan: _Plan = []
    for item in against:
        recorded = _router_sources(item)
        if recorded is None:
            plan.append((item, item, []))
            continue
        specs, decontaminated = recorded
        suffix = f" (decontaminated against {', '.join(decontaminated)})" if decontaminated else ""
        plan += [(f"{spec}{suffix}", spec, decontaminated) for spec in specs]
    labels = [label for label, _, _ in plan]
    for label in labels:
        if labels.count(label) > 1:
            raise ConfigError(f"source {label!r} is given twice")
    check_sources([spec for _, spec, _ in plan], data_dir)
    return plan


def _read_training(
    plan: _Plan, *, data_dir: str | Path | None, embedder: Embedder | None
) -> dict[str, list[str]]:
    from lmroute.data.prepare import prepare_battles

    prompts: dict[str, list[str]] = {}
    for label, spec, decontaminate_against in plan:
        battles, _ = prepare_battles(
            [spec],
            data_dir=data_dir,
            decontaminate_against=decontaminate_against,
            embedder=embedder,
            min_model_battles=1,
        )
        prompts[label] = list(dict.fromkeys(b.prompt for b in battles))
    return prompts


def data_similarity(
    targets: Sequence[str],
    against: Sequence[str],
    *,
    data_dir: str | Path | None = None,
    embedder: Embedder | None = None,
    cuts: Sequence[float] = DEFAULT_CUTS,
) -> list[SimilarityReport]:
    """The similarity report of each benchmark or prompt file in ``targets`` against the
    training data named by ``against`` (source specs or trained routers), per source and overall."""
    if not targets:
        raise ConfigError("no benchmark or prompt file to compare")
    # Every argument's error before any download or long read: a missing --against file or a cut
    # out of range was found only after the benchmarks were downloaded and embedded.
    cuts = check_cuts(cuts)
    for target in targets:
        _prompt_file(target)
    plan = _training_plan(against, data_dir=data_dir)
    sets = [read_prompt_set(t, data_dir=data_dir) for t in targets]
    if embedder is None:
        from lmroute.embeddings import get_embedder

        embedder = get_embedder("minilm")
    sources = _read_training(plan, data_dir=data_dir, embedder=embedder)
    return [similarity_report(p, sources, embedder=embedder, name=name, cuts=cuts) for name, p in sets]


def _router_sources(item: str) -> tuple[list[str], list[str]] | None:
    """A router's training sources (without the gold it left out) and the benchmarks it was
    decontaminated against; None when ``item`` names no router (it is then a source spec)."""
    from lmroute.registry import load_router, router_names

    if not (Path(item).is_dir() or item in router_names()):
        if ":" not in item and item.split("?")[0] != "alpaca-eval":
            raise ConfigError(
                f"{item!r} is neither a source spec (KIND:TARGET, e.g. battles:FILE.jsonl or gold:mmlu) "
                f"nor a router ({', '.join(router_names())} or a saved router directory)"
            )
        return None
    router = load_router(item)
    training: Any = router.metadata.get("training")
    sources = training.get("sources") if isinstance(training, dict) else None
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        raise CheckpointError(
            f"router {item!r} records no training sources (metadata.training.sources in its "
            "config.json); give the data it learned from as source specs"
        )
    report = training.get("report") if isinstance(training.get("report"), dict) else {}
    excluded = set(report.get("excluded_specs") or [])
    return [s for s in sources if s not in excluded], list(report.get("decontaminated_against") or [])


@dataclass
class SimilarityVsApgr:
    """Each left-out source's similarity to the other sources beside the router's APGR on it."""

    router: str
    sources: list[str]
    similarity: list[float]
    apgr: list[float]
    correlation: Correlation

    def to_dict(self) -> dict[str, Any]:
        return {
            "router": self.router,
            "points": [
                {"source": s, "similarity": x, "apgr": y}
                for s, x, y in zip(self.sources, self.similarity, self.apgr, strict=True)
            ],
            "correlation": self.correlation.to_dict(),
        }


def write_similarity_vs_apgr(result: SimilarityVsApgr, out: str | Path) -> list[Path]:
    """Write the scatter plot (``similarity-vs-apgr.png``) and its points (``.json``) to ``out``."""
    from lmroute._files import write_json
    from lmroute.evaluation.plots import plot_similarity_vs_apgr

    out = Path(out)
    return [
        plot_similarity_vs_apgr(
            [_short(spec) for spec in result.sources],
            result.similarity,
            result.apgr,
            result.correlation,
            out / "similarity-vs-apgr.png",
            router=result.router,
        ),
        write_json(out / "similarity-vs-apgr.json", result.to_dict()),
    ]


def _short(spec: str) -> str:
    """A source spec as a short plot label: ``gold:zeroeval/crux.jsonl?x=1`` -> ``zeroeval/crux``."""
    target = spec.partition("?")[0].partition(":")[2] or spec
    path = Path(target)
    return str(Path(path.parent.name) / path.stem) if path.suffix else target
