"""What an experiment measures: one cell per (protocol, evaluation set, router), their intervals,
and the JSON every protocol writes (see docs/experiments.md for its shape)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lmroute.evaluation import metrics
from lmroute.evaluation.evaluator import ORACLE, Evaluation, RouterResult, evaluate
from lmroute.exceptions import DataError
from lmroute.registry import get_router_class, load_router
from lmroute.workflows.experiment_config import ExperimentConfig, RouterSpec

if TYPE_CHECKING:
    from lmroute.data.benchmarks import Benchmark
    from lmroute.embeddings.base import Embedder
    from lmroute.routers.base import Router


@dataclass
class Cell:
    """One router on one evaluation set (a benchmark or a held-out source) under one protocol.

    ``trained_on``: for the source protocols, the held-out source (``leave-one-source-out``: the
    one left out; ``single-source``: the one trained on); empty for the benchmark protocols.
    """

    protocol: str
    benchmark: str
    result: RouterResult
    apgr_ci: tuple[float, float] | None
    fits: int
    seconds: float
    train_battles: int
    trained_on: str = ""
    baseline: bool = False


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    cells: list[Cell] = field(default_factory=list)
    evaluations: dict[tuple[str, str], Evaluation] = field(default_factory=dict)
    #: Per held-out source: how it was evaluated and what training left out for it.
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "config": self.config.model_dump(),
            "cells": [
                {
                    "protocol": c.protocol,
                    "benchmark": c.benchmark,
                    "trained_on": c.trained_on,
                    "apgr_ci95": c.apgr_ci,
                    "fits": c.fits,
                    "seconds": round(c.seconds, 1),
                    "train_battles": c.train_battles,
                    **c.result.to_dict(),
                }
                for c in self.cells
            ],
        }
        protocols = set(self.config.protocols)
        if "leave-one-source-out" in protocols:
            data["leave_one_source_out"] = leave_one_source_out_summary(self)
        if "single-source" in protocols:
            data["single_source"] = single_source_matrix(self)
        if "conversations" in protocols:
            data["conversations"] = conversations_table(self)
        return data

    def routers(self, protocol: str) -> list[str]:
        """Names of the routers with cells under ``protocol``, trained ones first, in order."""
        cells = [c for c in self.cells if c.protocol == protocol]
        return list(dict.fromkeys(c.result.router for c in sorted(cells, key=lambda c: c.baseline)))


def leave_one_source_out_summary(result: ExperimentResult) -> dict[str, Any]:
    """The ``leave_one_source_out`` part of ``results.json``: per held-out source, how it was
    evaluated and each router's APGR; per router, the mean and the worst case over the sources
    (long-prompt variants, ``shots`` > 0, are listed but left out of both)."""
    cells = [c for c in result.cells if c.protocol == "leave-one-source-out" and c.result.router != ORACLE]
    sources = []
    for name, facts in result.sources.items():
        here = [c for c in cells if c.benchmark == name]
        sources.append({"source": name, **facts, "routers": {c.result.router: _apgr_entry(c) for c in here}})
    summary = {}
    plain = {name for name, facts in result.sources.items() if not facts.get("shots")}
    for router in result.routers("leave-one-source-out"):
        values = {
            c.benchmark: c.result.apgr for c in cells if c.result.router == router and c.benchmark in plain
        }
        if not values:
            continue
        worst = min(values, key=values.__getitem__)
        summary[router] = {
            "mean": float(np.mean(list(values.values()))),
            "worst": values[worst],
            "worst_source": worst,
            "sources": len(values),
        }
    return {"sources": sources, "summary": summary}


def single_source_matrix(result: ExperimentResult) -> dict[str, Any]:
    """The ``single_source`` part of ``results.json``: ``apgr[router][trained_on][evaluated_on]``
    for trained routers, ``baselines[router][evaluated_on]`` for the untrained ones."""
    cells = [c for c in result.cells if c.protocol == "single-source" and c.result.router != ORACLE]
    apgr: dict[str, dict[str, dict[str, float]]] = {}
    baselines: dict[str, dict[str, float]] = {}
    for c in cells:
        if c.baseline:
            baselines.setdefault(c.result.router, {})[c.benchmark] = c.result.apgr
        else:
            apgr.setdefault(c.result.router, {}).setdefault(c.trained_on, {})[c.benchmark] = c.result.apgr
    return {"apgr": apgr, "baselines": baselines}


def conversations_table(result: ExperimentResult) -> dict[str, Any]:
    """The ``conversations`` part of ``results.json``: ``apgr[router][route_on]`` (with its
    interval) and the length of the shared system prompt the conversations were opened by."""
    table: dict[str, dict[str, Any]] = {}
    for c in result.cells:
        if c.protocol == "conversations" and c.result.router != ORACLE:
            table.setdefault(c.result.router, {})[c.benchmark] = _apgr_entry(c)
    prompt = result.config.system_prompt
    return {"system_prompt_chars": len(prompt) if prompt else 0, "apgr": table}


def _apgr_entry(cell: Cell) -> dict[str, Any]:
    entry: dict[str, Any] = {"apgr": cell.result.apgr, "apgr_ci95": cell.apgr_ci}
    if cell.result.seeds > 1:
        entry["apgr_sd"] = cell.result.apgr_sd
    return entry


def bootstrap_apgr_ci(
    scores: np.ndarray, benchmark: Benchmark, *, protocol: str, samples: int, seed: int
) -> tuple[float, float] | None:
    """95% percentile interval of APGR over items resampled with replacement; None when there are
    no samples, or when on every resample the two models are equal on average (PGR undefined)."""
    if samples <= 0:
        return None
    rng = np.random.default_rng(seed)
    strong, weak = benchmark.strong, benchmark.weak
    values = []
    for _ in range(samples):
        idx = rng.integers(0, len(scores), len(scores))
        s, w = strong[idx], weak[idx]
        if metrics.equal_quality(float(s.mean()), float(w.mean())):
            continue
        cur = metrics.curve(scores[idx], s, w, protocol=protocol)
        values.append(metrics.apgr(cur.c, cur.quality, s.mean(), w.mean()))
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def check_pgr_defined(bench: Benchmark, where: str) -> None:
    """DataError naming ``where`` when ``bench``'s two models have equal mean quality (PGR is
    undefined): found by the evaluation, after the routers had trained, naming nothing."""
    quality = float(bench.strong.mean())
    if metrics.equal_quality(quality, float(bench.weak.mean())):
        raise DataError(
            f"{where}: {bench.strong_model} and {bench.weak_model} have equal mean quality "
            f"({quality * bench.scale:.4g}) on its {len(bench)} prompts, so PGR is undefined: route "
            "between another pair"
        )


def fresh_router(spec: RouterSpec, embedder: Embedder | None, **overrides: Any) -> Router:
    """An untrained router as ``spec`` says (options ``overrides`` win), embedding with ``embedder``
    where it embeds."""
    return get_router_class(spec.name).create({**spec.options, **overrides}, embedder)


def check_routers(specs: Sequence[RouterSpec], baselines: Sequence[str], embedder: Embedder | None) -> None:
    """Make every router to train and load every baseline once, before any work: a misspelt router
    name, option (a misspelt embedder or base model too) or baseline otherwise failed only after the
    routers before it had trained."""
    for spec in specs:
        fresh_router(spec, embedder).check_options()
    for name in baselines:
        load_router(name)


def baseline_cells(
    config: ExperimentConfig, bench: Benchmark, *, protocol: str, trained_on: str = ""
) -> tuple[Evaluation, list[Cell]]:
    """The baselines (and the oracle) on ``bench``, as cells with intervals for single-seed ones."""
    baselines: Sequence[Router] = [load_router(name) for name in config.baselines]
    ev = evaluate(baselines, bench, protocol=config.eval_protocol)
    cells = []
    for res in ev.results:
        ci = None
        if res.scores is not None and res.seeds == 1:
            ci = bootstrap_apgr_ci(
                res.scores, bench, protocol=config.eval_protocol, samples=config.bootstrap, seed=config.seed
            )
        cells.append(Cell(protocol, bench.name, res, ci, 0, 0.0, 0, trained_on, baseline=True))
    return ev, cells
