"""The ``conversations`` protocol's run: each router trained once, scored on every ``route_on``."""

from __future__ import annotations

import numpy as np

import lmroute.workflows.conversations as workflow
from lmroute.data.benchmarks import Benchmark
from lmroute.data.mt_bench_turns import Conversations
from lmroute.workflows.experiment_config import ExperimentConfig
from lmroute.workflows.results import ExperimentResult


class Clock:
    """``time`` for the workflow: a fit takes 10 s, a scoring 1 s."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class Timed:
    def __init__(self, clock: Clock):
        self.clock = clock

    def fit(self, battles, progress=False):
        self.clock.now += 10
        return self

    def score(self, prompts):
        self.clock.now += 1
        return np.linspace(0, 1, len(prompts))


def test_each_cell_counts_its_own_router_fit_and_scoring(monkeypatch):
    # A cell's seconds ran from its router's fit to its own scoring: they took in the fits of the
    # routers after it and every route_on scored before (the published run: 20, 149, 203, 306,
    # 405 s for one router fitted once).
    clock = Clock()
    conv = (("user", "first question"), ("assistant", "an answer"), ("user", "second question"))
    scores = {"strong": np.array([9.0, 8.0, 3.0]), "weak": np.array([2.0, 8.0, 3.0])}
    bench = Benchmark("mt-bench-turn-2", ("second question",) * 3, scores, "strong", "weak")
    monkeypatch.setattr(
        "lmroute.data.mt_bench_turns.mt_bench_second_turns", lambda _: Conversations((conv,) * 3, bench)
    )
    monkeypatch.setattr("lmroute.data.prepare.prepare_battles", lambda *a, **k: (["battle"], None))
    monkeypatch.setattr(workflow, "time", clock)
    monkeypatch.setattr(workflow, "fresh_router", lambda spec, embedder: Timed(clock))
    config = ExperimentConfig(
        protocols=["conversations"],
        sources=["battles:x.jsonl"],
        routers=[{"name": "mf"}, {"name": "sw_ranking"}],
        baselines=[],
        route_on=["last_user", "user_turns", "conversation"],
        bootstrap=0,
    )
    result = ExperimentResult(config)
    workflow.run_conversations(
        config, result, data_dir=None, embedder=None, progress=False, say=lambda _: None
    )
    assert [(c.benchmark, c.seconds) for c in result.cells if not c.baseline] == [
        (route_on, 11.0) for route_on in config.route_on for _ in range(2)
    ]
