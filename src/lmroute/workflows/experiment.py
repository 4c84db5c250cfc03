"""Honest evaluation of trainable routers: train and score under named protocols.

* ``zero-shot``: for benchmark B, train on every source except B's own labels (leave one
  benchmark out), after removing training prompts that (nearly) duplicate B's prompts.
* ``gold-1500``: as above plus at most ``gold_max`` golden labels of B (each counted ``gold_weight``
  times; on graded scores a win also weighs its margin, see :mod:`lmroute.data.gold`),
  cross-fitted: B's distinct prompts are split into folds and each fold is scored by a router
  trained on gold labels drawn from the other folds only, so no item is ever scored by a router
  that saw its label, nor the label of a repeat of its prompt (MT-Bench: leave-one-question-out).
* ``leave-one-source-out`` and ``single-source``: domain transfer over the ``held_out`` sources
  (:mod:`lmroute.workflows.transfer`).

Routers only ever see prompt text: never a label, subject, category or file name.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmroute.data.benchmarks import Benchmark, load_benchmark
from lmroute.data.decontaminate import DEFAULT_THRESHOLD
from lmroute.evaluation.evaluator import RouterResult, evaluate_scores
from lmroute.exceptions import ConfigError
from lmroute.workflows.experiment_config import (
    BENCHMARK_PROTOCOLS,
    SOURCE_PROTOCOLS,
    ExperimentConfig,
    HeldOutSource,
    RouterSpec,
    load_experiment_config,
)
from lmroute.workflows.results import (
    Cell,
    ExperimentResult,
    baseline_cells,
    bootstrap_apgr_ci,
    check_pgr_defined,
    check_routers,
    fresh_router,
)

if TYPE_CHECKING:
    from lmroute.data.battles import Battle
    from lmroute.embeddings.base import Embedder

__all__ = [
    "Cell",
    "ExperimentConfig",
    "ExperimentResult",
    "HeldOutSource",
    "RouterSpec",
    "bootstrap_apgr_ci",
    "cross_fit_splits",
    "load_experiment_config",
    "run_experiment",
    "write_experiment",
]


def cross_fit_splits(n: int, folds: int, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split ``n`` items into ``folds`` shuffled folds: (train indices, held-out indices) each.

    Every item is held out exactly once; ``folds >= n`` gives leave-one-out.
    """
    if n < 2:
        raise ConfigError("cross-fitting needs at least two items")
    folds = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, folds)
    return [
        (np.sort(np.concatenate([p for j, p in enumerate(parts) if j != k])), np.sort(held))
        for k, held in enumerate(parts)
    ]


def run_experiment(
    config: ExperimentConfig,
    *,
    data_dir: str | Path | None,
    embedder: Embedder | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Train and evaluate every router under every protocol on every benchmark (benchmark
    protocols) and every held-out source (source protocols)."""
    from lmroute.data.sources import check_sources
    from lmroute.workflows.conversations import run_conversations
    from lmroute.workflows.transfer import run_source_protocols

    say = log or (lambda msg: print(msg, file=sys.stderr))
    check_routers(config.routers, config.baselines, embedder)
    # single-source reads the held-out sources' own specs last, after every other protocol's work
    own = [t for h in config.held_out for t in h.train] if "single-source" in config.protocols else []
    check_sources([*config.sources, *own], data_dir)
    result = ExperimentResult(config)
    if any(p in BENCHMARK_PROTOCOLS for p in config.protocols):
        # every benchmark read first: a misspelt second one failed after the first was done
        benches = [(name, load_benchmark(name, data_dir=data_dir)) for name in config.benchmarks]
        _check_benchmark_names(benches)
        for spec, bench in benches:
            check_pgr_defined(bench, spec)
        for bench_name, bench in benches:
            _run_benchmark(config, result, bench_name, bench, data_dir, embedder, progress, say)
    if any(p in SOURCE_PROTOCOLS for p in config.protocols):
        run_source_protocols(config, result, data_dir=data_dir, embedder=embedder, progress=progress, say=say)
    if "conversations" in config.protocols:
        run_conversations(config, result, data_dir=data_dir, embedder=embedder, progress=progress, say=say)
    return result


def _check_benchmark_names(benches: Sequence[tuple[str, Benchmark]]) -> None:
    """A ConfigError when two benchmarks have one name (``a/out.jsonl`` and ``b/out.jsonl`` are both
    ``out``): the results are keyed by it, and the later one's table column and plot replaced the
    earlier one's."""
    seen: dict[str, str] = {}
    for spec, bench in benches:
        if bench.name in seen:
            raise ConfigError(
                f"benchmarks {seen[bench.name]} and {spec} are both named {bench.name!r} in the results: "
                "give each its own file name"
            )
        seen[bench.name] = spec


def _run_benchmark(
    config: ExperimentConfig,
    result: ExperimentResult,
    bench_name: str,
    bench: Benchmark,
    data_dir: str | Path | None,
    embedder: Embedder | None,
    progress: bool,
    say: Callable[[str], None],
) -> None:
    from lmroute.data.prepare import prepare_battles

    say(f"[{bench.name}] {len(bench)} prompts")
    # Leave out B's own labels and every training prompt that (nearly) duplicates one of B's.
    battles, _ = prepare_battles(
        config.sources,
        data_dir=data_dir,
        exclude_benchmarks=[bench_name],
        embedder=embedder,
        threshold=DEFAULT_THRESHOLD if config.decontaminate else None,
        aliases=config.aliases,
    )
    say(f"[{bench.name}] {len(battles)} training battles")
    for protocol in config.protocols:
        if protocol not in BENCHMARK_PROTOCOLS:
            continue
        routers_scores: list[RouterResult] = []
        for spec in config.routers:
            started = time.perf_counter()
            if protocol == "zero-shot":
                router = fresh_router(spec, embedder).fit(battles, progress=progress)
                scores, fits = router.score(list(bench.prompts)), 1
            else:
                scores, fits = _cross_fit(spec, bench, battles, config, embedder, say)
            res = evaluate_scores(spec.title, [scores], bench, protocol=config.eval_protocol)
            ci = bootstrap_apgr_ci(
                scores, bench, protocol=config.eval_protocol, samples=config.bootstrap, seed=config.seed
            )
            seconds = time.perf_counter() - started
            result.cells.append(Cell(protocol, bench.name, res, ci, fits, seconds, len(battles)))
            routers_scores.append(res)
            say(f"[{bench.name}/{protocol}] {spec.title}: APGR {res.apgr:.4f} ({fits} fits, {seconds:.0f} s)")
        ev, cells = baseline_cells(config, bench, protocol=protocol)
        result.cells.extend(cells)
        ev.results = routers_scores + ev.results
        result.evaluations[(protocol, bench.name)] = ev


def _cross_fit(
    spec: RouterSpec,
    bench: Benchmark,
    battles: Sequence[Battle],
    config: ExperimentConfig,
    embedder: Embedder | None,
    say: Callable[[str], None],
) -> tuple[np.ndarray, int]:
    """Scores of ``bench``'s items, each from a router trained with gold labels of other folds
    only; and the number of fits."""
    from lmroute.data.gold import gold_battles

    # Folds of distinct prompts, not of items: a prompt that repeats (MMLU has 105 such) had its
    # copies in different folds, and the router trained on one copy's gold label scored the other.
    groups = _prompt_groups(bench.prompts)
    distinct = int(groups.max()) + 1
    folds = distinct if bench.name in config.leave_one_out else config.folds
    splits = [
        (np.flatnonzero(np.isin(groups, train)), np.flatnonzero(np.isin(groups, held)))
        for train, held in cross_fit_splits(distinct, folds, seed=config.seed)
    ]
    rng = np.random.default_rng(config.seed)
    scores = np.full(len(bench), np.nan)
    for k, (train_idx, held_idx) in enumerate(splits):
        take = min(config.gold_max, len(train_idx))
        gold_idx = np.sort(rng.choice(train_idx, size=take, replace=False))
        gold = gold_battles(bench.subset(gold_idx), weigh_margins=config.gold_margins)
        router = fresh_router(spec, embedder).fit([*battles, *gold * config.gold_weight], progress=False)
        scores[held_idx] = router.score([bench.prompts[i] for i in held_idx])
        if (k + 1) % max(1, len(splits) // 5) == 0:
            say(f"  {spec.title}: fold {k + 1}/{len(splits)}")
    return scores, len(splits)


def _prompt_groups(prompts: Sequence[str]) -> np.ndarray:
    """A group id per item, one per distinct prompt, numbered in order of first appearance (so
    that without repeats the groups are the items themselves, and the folds the items' folds)."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(p, len(ids)) for p in prompts], dtype=np.int64)


def write_experiment(result: ExperimentResult, out: str | Path) -> list[Path]:
    """Write ``results.md``, ``results.json`` and one plot per (protocol, benchmark)."""
    from lmroute._files import write_atomic, write_json
    from lmroute.evaluation.plots import plot_curves
    from lmroute.evaluation.report import experiment_markdown

    out = Path(out)
    written = [
        write_atomic(out / "results.md", (experiment_markdown(result) + "\n").encode("utf-8")),
        write_json(out / "results.json", result.to_dict()),
    ]
    for (protocol, bench), ev in result.evaluations.items():
        written.append(plot_curves(ev, out / f"{protocol}-{bench}.png"))
    return written
