"""The ``conversations`` protocol: what to route a multi-turn request on, measured.

MT-Bench's second turns (:mod:`lmroute.data.mt_bench_turns`) are conversations of a first
question, an answer and a second question, whose second answers were judged for both models.
Each router is trained once as under ``zero-shot`` for MT-Bench (its gold left out, its prompts
and second turns decontaminated), then every conversation is routed on the text each ``route_on``
setting gives, opened by the experiment's ``system_prompt`` when it has one: the same long prompt
for every conversation, as a deployed assistant sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lmroute.data.decontaminate import DEFAULT_THRESHOLD
from lmroute.evaluation.evaluator import evaluate_scores
from lmroute.workflows.experiment_config import ExperimentConfig
from lmroute.workflows.results import Cell, ExperimentResult, baseline_cells, bootstrap_apgr_ci, fresh_router

if TYPE_CHECKING:
    from lmroute.embeddings.base import Embedder

PROTOCOL = "conversations"


def run_conversations(
    config: ExperimentConfig,
    result: ExperimentResult,
    *,
    data_dir: str | Path | None,
    embedder: Embedder | None,
    progress: bool,
    say: Callable[[str], None],
) -> None:
    """Route MT-Bench's second turns on each ``config.route_on`` setting with every router."""
    from lmroute.data.mt_bench_turns import mt_bench_second_turns
    from lmroute.data.prepare import prepare_battles

    conversations = mt_bench_second_turns(data_dir)
    battles, _ = prepare_battles(
        config.sources,
        data_dir=data_dir,
        exclude_benchmarks=["mt-bench"],
        embedder=embedder,
        threshold=DEFAULT_THRESHOLD if config.decontaminate else None,
        aliases=config.aliases,
    )
    say(f"[{PROTOCOL}] {len(conversations.messages)} conversations, {len(battles)} training battles")
    trained = []
    for spec in config.routers:
        started = time.perf_counter()
        router = fresh_router(spec, embedder).fit(battles, progress=progress)
        trained.append((spec.title, router, time.perf_counter() - started))
    for route_on in config.route_on:
        bench = conversations.routed(route_on, system_prompt=config.system_prompt, name=route_on)
        for title, router, fitted in trained:
            # a cell's time: its router's one fit and its own scoring, as a zero-shot cell's
            started = time.perf_counter()
            scores = router.score(list(bench.prompts))
            res = evaluate_scores(title, [scores], bench, protocol=config.eval_protocol)
            ci = bootstrap_apgr_ci(
                scores, bench, protocol=config.eval_protocol, samples=config.bootstrap, seed=config.seed
            )
            seconds = fitted + time.perf_counter() - started
            result.cells.append(Cell(PROTOCOL, route_on, res, ci, 1, seconds, len(battles)))
            say(f"[{PROTOCOL}/{route_on}] {title}: APGR {res.apgr:.4f}")
        ev, cells = baseline_cells(config, bench, protocol=PROTOCOL)
        result.cells.extend(cells)
        ev.results = [c.result for c in result.cells if c.protocol == PROTOCOL and c.benchmark == route_on]
        result.evaluations[(PROTOCOL, route_on)] = ev
