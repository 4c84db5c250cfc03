"""Domain transfer: how routers do on a source of prompts they were not trained on.

* ``leave-one-source-out``: for each held-out source S (a benchmark or a many-model outcomes
  file), train on the experiment's sources without S's own specs, after dropping training prompts
  that (nearly) duplicate S's prompts, and evaluate on S. The mean over the sources is what
  predicts a user's new traffic; the worst case says how badly one domain can go.
* ``single-source``: train on each held-out source's own specs alone and evaluate on every other
  held-out source: which source carries signal for which domain.

A router scores with its configured pair (by default the one the shipped routers compare) on every
source: a user's traffic has no labels to say which pair it resembles. A source of many models is
evaluated between the ``strong_model`` and ``weak_model`` its entry names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmroute.data.benchmarks import PUBLIC_BENCHMARKS, Benchmark, load_benchmark
from lmroute.data.decontaminate import DEFAULT_THRESHOLD
from lmroute.evaluation.evaluator import RouterResult, evaluate_scores
from lmroute.exceptions import ConfigError, DataError
from lmroute.workflows.experiment_config import ExperimentConfig, HeldOutSource, RouterSpec, carries
from lmroute.workflows.results import (
    Cell,
    ExperimentResult,
    baseline_cells,
    bootstrap_apgr_ci,
    fresh_router,
)

if TYPE_CHECKING:
    from lmroute.data.battles import Battle
    from lmroute.embeddings.base import Embedder

Say = Callable[[str], None]


def load_held_out(source: HeldOutSource, *, data_dir: str | Path | None) -> Benchmark:
    """The evaluation set of a held-out source, routed between its pair, named ``source.name``."""
    key = source.benchmark.lower().replace("_", "-")
    if key in PUBLIC_BENCHMARKS:
        bench = load_benchmark(
            key, data_dir=data_dir, strong_model=source.strong_model, weak_model=source.weak_model
        )
    else:
        bench = _pair_from_file(source, resolve_held_out_file(source.benchmark, data_dir))
    prompts = bench.prompts
    if source.shots:
        bench, prompts = _with_shots(bench, source.shots)
    return Benchmark(
        source.name,
        prompts,
        bench.scores,
        bench.strong_model,
        bench.weak_model,
        bench.ids,
        bench.categories,
        bench.costs,
        bench.scale,
        bench.followups,
    )


def _with_shots(bench: Benchmark, shots: int) -> tuple[Benchmark, tuple[str, ...]]:
    """``bench`` without ``shots`` items drawn with seed 0, and its prompts each opened by those."""
    if shots >= len(bench):
        raise ConfigError(f"{bench.name}: {shots} shots leave no item to evaluate")
    chosen = np.random.default_rng(0).choice(len(bench), size=shots, replace=False)
    prefix = "\n\n".join(bench.prompts[i] for i in chosen)
    rest = bench.subset(np.setdiff1d(np.arange(len(bench)), chosen))
    return rest, tuple(f"{prefix}\n\n{prompt}" for prompt in rest.prompts)


def resolve_held_out_file(
    target: str, data_dir: str | Path | None, *, what: str = "held-out source file"
) -> Path:
    """The file of a held-out source named in an experiment file (``what`` in errors): as given,
    else in the data folders, as a source spec's file is found (``data_dir``, then
    ``$LMROUTE_DATA_DIR``: :func:`lmroute.data.public.find_data_file`). Shared with
    :mod:`lmroute.workflows.source_transfer` and :mod:`lmroute.workflows.pair_transfer`."""
    from lmroute.data.public import find_data_file

    path = Path(target).expanduser()
    found, folders = find_data_file(path, data_dir)
    if found is None:
        where = f" (nor in data directory {', '.join(map(str, folders))})" if folders else ""
        hint = (
            ""
            if folders or path.is_absolute()
            else "; relative paths are also looked up in --data-dir DIR or $LMROUTE_DATA_DIR"
        )
        raise DataError(f"{what} {target} does not exist{where}{hint}")
    return found


def _pair_from_file(source: HeldOutSource, path: Path) -> Benchmark:
    """A many-model outcomes file as a two-model benchmark: items where both have a score."""
    from lmroute.data.custom import read_custom

    table = read_custom(path)
    prompts, scores = table.prompts, table.scores
    pair = (source.strong_model, source.weak_model)
    if None in pair:
        raise ConfigError(f"held-out source {source.name!r}: name its strong_model and weak_model")
    missing = [m for m in pair if m not in scores]
    if missing:
        raise DataError(
            f"{path} has no model {', '.join(map(str, missing))}; it has: {', '.join(table.models)}"
        )
    strong, weak = scores[str(pair[0])], scores[str(pair[1])]
    keep = np.flatnonzero(np.isfinite(strong) & np.isfinite(weak))
    if keep.size < 2:
        raise DataError(f"{path}: fewer than two items have scores of both {pair[0]} and {pair[1]}")
    return Benchmark(
        source.name,
        tuple(prompts[i] for i in keep),
        {str(pair[0]): strong[keep], str(pair[1]): weak[keep]},
        str(pair[0]),
        str(pair[1]),
        tuple(f"{path.stem}/{i}" for i in keep),
    )


def run_source_protocols(
    config: ExperimentConfig,
    result: ExperimentResult,
    *,
    data_dir: str | Path | None,
    embedder: Embedder | None,
    progress: bool,
    say: Say,
) -> None:
    """Run ``leave-one-source-out`` and ``single-source`` as ``config.protocols`` asks."""
    benches = {h.name: load_held_out(h, data_dir=data_dir) for h in config.held_out}
    for held in config.held_out:
        bench = benches[held.name]
        result.sources[held.name] = {
            "benchmark": held.benchmark,
            "shots": held.shots,
            "strong_model": bench.strong_model,
            "weak_model": bench.weak_model,
            "items": len(bench),
        }
        say(f"[{held.name}] {len(bench)} items, {bench.strong_model} vs {bench.weak_model}")
    if "single-source" in config.protocols:
        _check_single_source_pairs(config, data_dir)
    for protocol in ("leave-one-source-out", "single-source"):
        if protocol not in config.protocols:
            continue
        for held in config.held_out:
            ev, cells = baseline_cells(config, benches[held.name], protocol=protocol)
            result.cells.extend(cells)
            if protocol == "leave-one-source-out":  # single-source has a router per training source
                result.evaluations[(protocol, held.name)] = ev
    if "leave-one-source-out" in config.protocols:
        # a source and its long-prompt variants leave out the same training data: one fit for all
        groups: dict[tuple[str, tuple[str, ...]], list[HeldOutSource]] = {}
        for held in config.held_out:
            groups.setdefault((held.benchmark, tuple(sorted(held.train))), []).append(held)
        for members in groups.values():
            _leave_out(config, result, members, benches, data_dir, embedder, progress, say)
    if "single-source" in config.protocols:
        for held in config.held_out:
            if held.train and not held.shots:
                _train_on_one(config, result, held, benches, data_dir, embedder, progress, say)


def _leave_out(
    config: ExperimentConfig,
    result: ExperimentResult,
    members: list[HeldOutSource],
    benches: dict[str, Benchmark],
    data_dir: str | Path | None,
    embedder: Embedder | None,
    progress: bool,
    say: Say,
) -> None:
    held = members[0]
    specs = [s for s in config.sources if not carries(s, held)]
    battles, report = _prepare(config, specs, [benches[m.name] for m in members], data_dir, embedder)
    for m in members:
        result.sources[m.name].update(
            {
                "train_sources": specs,
                "left_out": [s for s in config.sources if s not in specs],
                "train_battles": len(battles),
                "decontaminated": _dropped(report),
            }
        )
    names = ", ".join(m.name for m in members)
    say(f"[{names}/leave-one-source-out] {len(battles)} training battles from {len(specs)} sources")
    for k, spec in enumerate(config.routers):
        started = time.perf_counter()
        router = fresh_router(spec, embedder).fit(battles, progress=progress)
        for m in members:
            res = _score_into(
                config,
                result,
                "leave-one-source-out",
                spec,
                router,
                benches[m.name],
                started,
                len(battles),
                m,
            )
            ev = result.evaluations[("leave-one-source-out", m.name)]
            ev.results.insert(k, res)  # the trained routers first, as in the benchmark protocols
            say(f"[{m.name}/leave-one-source-out] {spec.title}: APGR {res.apgr:.4f}")
            started = time.perf_counter()


def _train_on_one(
    config: ExperimentConfig,
    result: ExperimentResult,
    held: HeldOutSource,
    benches: dict[str, Benchmark],
    data_dir: str | Path | None,
    embedder: Embedder | None,
    progress: bool,
    say: Say,
) -> None:
    shots = {h.name: h.shots for h in config.held_out}
    targets = [b for name, b in benches.items() if name != held.name and not shots[name]]
    battles, _ = _prepare(config, held.train, targets, data_dir, embedder)
    models = {m for b in battles for m in (b.model_a, b.model_b)}
    say(f"[single-source] trained on {held.name}: {len(battles)} battles")
    for spec in config.routers:
        started = time.perf_counter()
        router = fresh_router(spec, embedder, **_pair_for(spec, held, models))
        router.fit(battles, progress=progress)
        for bench in targets:
            _score_into(config, result, "single-source", spec, router, bench, started, len(battles), held)
            started = time.perf_counter()


def _check_single_source_pairs(config: ExperimentConfig, data_dir: str | Path | None) -> None:
    """The ConfigError of :func:`_pair_for`, before any training: a source whose data lacks a
    router's pair and holds no ``train_pair`` was found only at single-source's turn, after
    leave-one-source-out had trained on every source. Reads each source's own specs once more
    (without decontaminating them): seconds beside the training."""
    from lmroute.data.sources import load_sources
    from lmroute.registry import get_router_class

    if not any("strong_model" in get_router_class(s.name).config_class.model_fields for s in config.routers):
        return
    for held in config.held_out:
        if held.train and not held.shots:
            battles, _ = load_sources(held.train, data_dir=data_dir, aliases=config.aliases)
            models = {m for b in battles for m in (b.model_a, b.model_b)}
            for spec in config.routers:
                _pair_for(spec, held, models)


def _pair_for(spec: RouterSpec, held: HeldOutSource, models: set[str]) -> dict[str, Any]:
    """Pair options for a router trained on ``held`` alone: its own pair when the data knows both
    models, else ``held.train_pair`` or the source's evaluation pair."""
    from lmroute.registry import get_router_class

    fields = get_router_class(spec.name).config_class.model_fields
    if "strong_model" not in fields:
        return {}
    own = (
        spec.options.get("strong_model", fields["strong_model"].default),
        spec.options.get("weak_model", fields["weak_model"].default),
    )
    if set(own) <= models:
        return {}
    pair = held.train_pair or (held.strong_model, held.weak_model)
    if None in pair or not set(pair) <= models:
        raise ConfigError(
            f"held-out source {held.name!r}: its training data lacks {own[0]} or {own[1]}; give "
            "train_pair, two of its models, for routers trained on it alone"
        )
    return {"strong_model": pair[0], "weak_model": pair[1]}


def _prepare(
    config: ExperimentConfig,
    specs: Sequence[str],
    against: Sequence[Benchmark],
    data_dir: str | Path | None,
    embedder: Embedder | None,
) -> tuple[list[Battle], Any]:
    """Training battles of ``specs`` without the gold of ``against``'s public benchmarks and
    without prompts that (nearly) duplicate theirs."""
    from lmroute.data.prepare import prepare_battles

    if not specs:
        raise ConfigError("no training sources left for this held-out source")
    return prepare_battles(
        specs,
        data_dir=data_dir,
        eval_prompts={b.name: [*b.prompts, *(t for turns in b.followups for t in turns)] for b in against},
        embedder=embedder,
        threshold=DEFAULT_THRESHOLD if config.decontaminate else None,
        aliases=config.aliases,
    )


def _dropped(report: Any) -> int:
    d = report.decontamination
    return 0 if d is None else d.total - d.kept


def _score_into(
    config: ExperimentConfig,
    result: ExperimentResult,
    protocol: str,
    spec: RouterSpec,
    router: Any,
    bench: Benchmark,
    started: float,
    train_battles: int,
    held: HeldOutSource,
) -> RouterResult:
    scores = router.score(list(bench.prompts))
    res = evaluate_scores(spec.title, [scores], bench, protocol=config.eval_protocol)
    ci = bootstrap_apgr_ci(
        scores, bench, protocol=config.eval_protocol, samples=config.bootstrap, seed=config.seed
    )
    seconds = time.perf_counter() - started
    result.cells.append(Cell(protocol, bench.name, res, ci, 1, seconds, train_battles, held.name))
    return res
