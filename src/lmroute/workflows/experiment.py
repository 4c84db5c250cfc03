"""Honest evaluation of trainable routers: train and score under named protocols.

* ``zero-shot``: for benchmark B, train on every source except B's own labels (leave one
  benchmark out), after removing training prompts that (nearly) duplicate B's prompts.
* ``gold-1500``: as above plus at most ``gold_max`` golden labels of B (each counted ``gold_weight``
  times; on graded scores a win also weighs its margin, see :mod:`lmroute.data.gold`),
  cross-fitted: B's items are split into folds and each fold is scored by a router trained on gold
  labels drawn from the other folds only, so no item is ever scored by a router that saw its
  label (MT-Bench: leave-one-question-out).

Routers only ever see prompt text: never a label, subject, category or file name.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lmroute.data.benchmarks import Benchmark, load_benchmark
from lmroute.data.decontaminate import DEFAULT_THRESHOLD
from lmroute.evaluation import metrics
from lmroute.evaluation.evaluator import Evaluation, RouterResult, evaluate, evaluate_scores
from lmroute.exceptions import ConfigError
from lmroute.registry import get_router_class, load_router

if TYPE_CHECKING:
    from lmroute.data.battles import Battle
    from lmroute.embeddings.base import Embedder
    from lmroute.routers.base import Router

Protocol = Literal["zero-shot", "gold-1500"]


def _all_protocols() -> list[Protocol]:
    return ["zero-shot", "gold-1500"]


class RouterSpec(BaseModel):
    """A router to train: its registry name, a label for tables, and its options."""

    model_config = ConfigDict(extra="forbid")
    name: str
    label: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.label or self.name


class ExperimentConfig(BaseModel):
    """What an experiment trains, on which data, and how it is evaluated (a YAML file)."""

    model_config = ConfigDict(extra="forbid")
    benchmarks: list[str] = Field(default_factory=lambda: ["mmlu", "gsm8k", "mt-bench"])
    protocols: list[Protocol] = Field(default_factory=_all_protocols)
    #: Training sources (``battles:FILE``, ``gold:mmlu``...); ``gold:B`` is left out when testing on B.
    sources: list[str]
    routers: list[RouterSpec]
    baselines: list[str] = Field(default_factory=lambda: ["random", "length"])
    gold_max: int = Field(default=1500, ge=1)
    #: Each in-domain gold label enters training this many times (``gold-1500``): a few hundred
    #: in-domain labels are otherwise outweighed by tens of thousands of battles from other domains.
    gold_weight: int = Field(default=1, ge=1)
    #: Weigh a gold win on graded scores (MT-Bench's 1-10) by its score gap, as ``gold:`` sources do.
    gold_margins: bool = True
    folds: int = Field(default=10, ge=2)
    #: Benchmarks cross-fitted leave-one-item-out instead of in ``folds`` folds.
    leave_one_out: list[str] = Field(default_factory=lambda: ["mt-bench"])
    decontaminate: bool = True
    eval_protocol: Literal["paper", "exact"] = "paper"
    bootstrap: int = Field(default=1000, ge=0)
    seed: int = 0


@dataclass
class Cell:
    """One router on one benchmark under one training protocol."""

    protocol: str
    benchmark: str
    result: RouterResult
    apgr_ci: tuple[float, float] | None
    fits: int
    seconds: float
    train_battles: int


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    cells: list[Cell] = field(default_factory=list)
    evaluations: dict[tuple[str, str], Evaluation] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(),
            "cells": [
                {
                    "protocol": c.protocol,
                    "benchmark": c.benchmark,
                    "apgr_ci95": c.apgr_ci,
                    "fits": c.fits,
                    "seconds": round(c.seconds, 1),
                    "train_battles": c.train_battles,
                    **c.result.to_dict(),
                }
                for c in self.cells
            ],
        }


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


def bootstrap_apgr_ci(
    scores: np.ndarray, benchmark: Benchmark, *, protocol: str, samples: int, seed: int
) -> tuple[float, float] | None:
    """95% percentile interval of APGR over items resampled with replacement."""
    if samples <= 0:
        return None
    rng = np.random.default_rng(seed)
    strong, weak = benchmark.strong, benchmark.weak
    values = []
    for _ in range(samples):
        idx = rng.integers(0, len(scores), len(scores))
        s, w = strong[idx], weak[idx]
        if s.mean() == w.mean():
            continue
        cur = metrics.curve(scores[idx], s, w, protocol=protocol)
        values.append(metrics.apgr(cur.c, cur.quality, s.mean(), w.mean()))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def run_experiment(
    config: ExperimentConfig,
    *,
    data_dir: str | Path | None,
    embedder: Embedder | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Train and evaluate every router under every protocol on every benchmark."""
    from lmroute.data.prepare import prepare_battles

    say = log or (lambda msg: print(msg, file=sys.stderr))
    result = ExperimentResult(config)
    for bench_name in config.benchmarks:
        bench = load_benchmark(bench_name, data_dir=data_dir)
        say(f"[{bench.name}] {len(bench)} prompts")
        # Leave out B's own labels and every training prompt that (nearly) duplicates one of B's.
        battles, _ = prepare_battles(
            config.sources,
            data_dir=data_dir,
            exclude_benchmarks=[bench_name],
            embedder=embedder,
            threshold=DEFAULT_THRESHOLD if config.decontaminate else None,
        )
        say(f"[{bench.name}] {len(battles)} training battles")
        baselines = [load_router(name) for name in config.baselines]
        for protocol in config.protocols:
            routers_scores: list[RouterResult] = []
            for spec in config.routers:
                started = time.perf_counter()
                if protocol == "zero-shot":
                    router = _fresh(spec, embedder).fit(battles, progress=progress)
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
                say(
                    f"[{bench.name}/{protocol}] {spec.title}: APGR {res.apgr:.4f} "
                    f"({fits} fits, {seconds:.0f} s)"
                )
            ev = evaluate(baselines, bench, protocol=config.eval_protocol)
            for res in ev.results:
                ci = None
                if res.scores is not None and res.seeds == 1:
                    ci = bootstrap_apgr_ci(
                        res.scores,
                        bench,
                        protocol=config.eval_protocol,
                        samples=config.bootstrap,
                        seed=config.seed,
                    )
                result.cells.append(Cell(protocol, bench.name, res, ci, 0, 0.0, 0))
            ev.results = routers_scores + ev.results
            result.evaluations[(protocol, bench.name)] = ev
    return result


def _fresh(spec: RouterSpec, embedder: Embedder | None) -> Router:
    """An untrained router as ``spec`` says, embedding with ``embedder`` where it embeds."""
    cls = get_router_class(spec.name)
    options = dict(spec.options)
    if embedder is not None and "embedder" in cls.config_class.model_fields:
        return cls(options, embedder=embedder)
    return cls(options)


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

    folds = len(bench) if bench.name in config.leave_one_out else config.folds
    splits = cross_fit_splits(len(bench), folds, seed=config.seed)
    rng = np.random.default_rng(config.seed)
    scores = np.full(len(bench), np.nan)
    for k, (train_idx, held_idx) in enumerate(splits):
        take = min(config.gold_max, len(train_idx))
        gold_idx = np.sort(rng.choice(train_idx, size=take, replace=False))
        gold = gold_battles(bench.subset(gold_idx), weigh_margins=config.gold_margins)
        router = _fresh(spec, embedder).fit([*battles, *gold * config.gold_weight], progress=False)
        scores[held_idx] = router.score([bench.prompts[i] for i in held_idx])
        if (k + 1) % max(1, len(splits) // 5) == 0:
            say(f"  {spec.title}: fold {k + 1}/{len(splits)}")
    return scores, len(splits)


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML file, with errors that name the file."""
    from lmroute._yaml import read_model

    return read_model(ExperimentConfig, path)


def write_experiment(result: ExperimentResult, out: str | Path) -> list[Path]:
    """Write ``results.md``, ``results.json`` and one plot per (protocol, benchmark)."""
    import json

    from lmroute.evaluation.plots import plot_curves
    from lmroute.evaluation.report import experiment_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.md", out / "results.json"]
    written[0].write_text(experiment_markdown(result) + "\n", "utf-8")
    written[1].write_text(json.dumps(result.to_dict(), indent=2) + "\n", "utf-8")
    for (protocol, bench), ev in result.evaluations.items():
        written.append(plot_curves(ev, out / f"{protocol}-{bench}.png"))
    return written
