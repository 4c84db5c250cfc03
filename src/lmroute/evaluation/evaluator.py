"""Score a benchmark's prompts with routers and compute the paper's metrics for each."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from lmroute.data.benchmarks import Benchmark
from lmroute.evaluation import metrics
from lmroute.exceptions import ConfigError, DataError
from lmroute.routers.base import Router, check_threshold

#: Seeds of a stochastic router (``random``) averaged in evaluation, as in the reference.
DEFAULT_SEEDS = tuple(range(10))
CPT_TARGETS = (0.2, 0.5, 0.8)
ORACLE = "oracle"


@dataclass
class RouterResult:
    """Metrics of one router on one benchmark (means over seeds for stochastic routers)."""

    router: str
    apgr: float
    auc: float
    cpt20: float
    cpt50: float
    cpt80: float
    quality_at_50: float
    strong_share_at_threshold: float
    threshold: float
    points: list[dict[str, float]]
    seeds: int = 1
    apgr_sd: float = 0.0
    #: Mean cost per item of routing at ``threshold``, when the benchmark has both models' costs.
    cost_at_threshold: float | None = None
    #: Per-item scores of the first seed (seed 0 in :func:`evaluate`, the one a stochastic router
    #: scores with by default): a mean of several seeds' scores is no router's, and its curve is
    #: not the mean curve the metrics are.
    scores: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "scores"}
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in data.items()}


@dataclass
class Evaluation:
    """Every router's result on one benchmark under one protocol."""

    benchmark: str
    protocol: str
    strong_model: str
    weak_model: str
    strong_quality: float
    weak_quality: float
    n_prompts: int
    results: list[RouterResult]
    #: Mean cost per item of the strong and the weak model, when the benchmark gives costs.
    strong_cost: float | None = None
    weak_cost: float | None = None

    @property
    def warnings(self) -> list[str]:
        """What makes these numbers mean something other than they seem."""
        if self.strong_quality < self.weak_quality:
            return [
                f"the strong model {self.strong_model} scores below the weak model {self.weak_model} "
                f"({self.strong_quality:.4g} < {self.weak_quality:.4g}): PGR and APGR are negative for a "
                "router that sends the right prompts to the strong model (the oracle's too); is the pair "
                "named the wrong way round?"
            ]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "results"},
            "warnings": self.warnings,
            "routers": {
                r.router: {
                    **r.to_dict(),
                    "strong_quality": self.strong_quality,
                    "weak_quality": self.weak_quality,
                }
                for r in self.results
            },
        }


def score_prompts(
    router: Router, prompts: Sequence[str], *, batch_size: int = 256, progress: bool = False
) -> np.ndarray:
    """Score prompts in batches, with a progress bar when asked."""
    from tqdm import tqdm

    parts = []
    with tqdm(
        total=len(prompts),
        desc=f"scoring with {router.name}",
        unit="prompt",
        disable=not progress,
        file=sys.stderr,
        leave=False,
        delay=1.0,
    ) as bar:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            parts.append(router.score(batch))
            bar.update(len(batch))
    return np.concatenate(parts) if parts else np.zeros(0)


def score_records(prompts: Sequence[str], scores: Sequence[float] | np.ndarray) -> Iterator[dict[str, Any]]:
    """``{"prompt", "score"}`` per prompt: the records ``lmroute score`` writes."""
    for prompt, score in zip(prompts, scores, strict=True):
        yield {"prompt": prompt, "score": float(score)}


def evaluate_scores(
    name: str,
    score_sets: Sequence[np.ndarray],
    benchmark: Benchmark,
    *,
    protocol: str = "paper",
    threshold: float = 0.5,
) -> RouterResult:
    """Metrics of a router given its scores (several arrays: one per seed, averaged)."""
    if not score_sets:
        raise ConfigError("no scores to evaluate")
    strong, weak = benchmark.strong, benchmark.weak
    s_q, w_q = float(strong.mean()), float(weak.mean())
    rows, curves = [], []
    for scores in score_sets:
        cur = metrics.curve(scores, strong, weak, protocol=protocol)
        curves.append(cur)
        rows.append(
            [
                metrics.apgr(cur.c, cur.quality, s_q, w_q),
                metrics.auc(cur.c, cur.quality),
                *(metrics.cpt(cur.c, cur.quality, x, s_q, w_q) for x in CPT_TARGETS),
                metrics.quality_at(cur.c, cur.quality, 0.5),
                float(np.mean(np.asarray(scores) >= threshold)),
                _routed_cost(benchmark, np.asarray(scores) >= threshold),
            ]
        )
    table = np.asarray(rows)
    mean = table.mean(axis=0)
    if len({len(c.c) for c in curves}) == 1:
        c_mean = np.mean([c.c for c in curves], axis=0)
        q_mean = np.mean([c.quality for c in curves], axis=0)
        t_mean = np.mean([c.thresholds for c in curves], axis=0)
        points = metrics.Curve(c_mean, q_mean, t_mean).to_points()
    else:
        points = curves[0].to_points()
    scale = benchmark.scale
    for p in points:
        p["quality"] *= scale
    return RouterResult(
        router=name,
        apgr=float(mean[0]),
        auc=float(mean[1]) * scale,
        cpt20=float(mean[2]),
        cpt50=float(mean[3]),
        cpt80=float(mean[4]),
        quality_at_50=float(mean[5]) * scale,
        strong_share_at_threshold=float(mean[6]),
        threshold=threshold,
        points=points,
        seeds=len(score_sets),
        apgr_sd=float(table[:, 0].std(ddof=1)) if len(score_sets) > 1 else 0.0,
        cost_at_threshold=None if np.isnan(mean[7]) else float(mean[7]),
        scores=np.asarray(score_sets[0], dtype=np.float64),
    )


def _routed_cost(benchmark: Benchmark, strong: np.ndarray) -> float:
    """Mean cost per item when the items marked ``strong`` go to the strong model (NaN: no costs)."""
    costs = benchmark.costs
    if benchmark.strong_model not in costs or benchmark.weak_model not in costs:
        return float("nan")
    return float(np.where(strong, costs[benchmark.strong_model], costs[benchmark.weak_model]).mean())


def evaluate(
    routers: Sequence[Router],
    benchmark: Benchmark,
    *,
    protocol: str = "paper",
    seeds: Sequence[int] = DEFAULT_SEEDS,
    oracle: bool = True,
    threshold: float = 0.5,
    progress: bool = False,
    names: Sequence[str] | None = None,
    on_router: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate routers on a benchmark; stochastic routers are averaged over ``seeds``."""
    if isinstance(routers, Router) or not all(isinstance(r, Router) for r in routers):
        raise ConfigError(
            "evaluate() takes a list of Router objects: lmroute.load_router(name or directory) makes one"
        )
    if protocol not in metrics.PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; use one of {', '.join(metrics.PROTOCOLS)}")
    threshold = check_threshold(threshold)
    strong_q, weak_q = float(benchmark.strong.mean()), float(benchmark.weak.mean())
    if metrics.equal_quality(strong_q, weak_q):
        raise DataError(
            f"{benchmark.source or benchmark.name}: the strong model {benchmark.strong_model} and the weak "
            f"model {benchmark.weak_model} have equal mean quality ({strong_q * benchmark.scale:.4g}) on its "
            f"{len(benchmark)} items, so PGR is undefined: route between another pair "
            "(`lmroute eval --strong-model A --weak-model B`)"
        )
    names = list(names) if names is not None else [r.name for r in routers]
    if len(names) != len(routers):
        raise ConfigError(f"{len(routers)} routers but {len(names)} names")
    # The results are keyed by name (--json, --save-scores): a second row of one name replaced the
    # first there, while the table showed both.
    rows = [*names, *([ORACLE] if oracle else [])]
    repeated = sorted({n for n in rows if rows.count(n) > 1})
    if repeated:
        clash = " (the oracle's row is named so: load that router from another path)"
        raise ConfigError(
            f"two rows of the results would be named {repeated[0]!r}: give each router once"
            + (clash if repeated[0] == ORACLE else "")
        )
    prompts = list(benchmark.prompts)
    results = []
    for router, name in zip(routers, names, strict=True):
        if on_router:
            on_router(name)
        variants = [router.with_seed(s) for s in seeds] if router.stochastic else [router]
        score_sets = [score_prompts(v, prompts, progress=progress) for v in variants]
        results.append(evaluate_scores(name, score_sets, benchmark, protocol=protocol, threshold=threshold))
    if oracle:
        gains = metrics.oracle_scores(benchmark.strong, benchmark.weak)
        results.append(
            evaluate_scores(ORACLE, [gains], benchmark, protocol=protocol, threshold=_oracle_threshold(gains))
        )
    return evaluation_of(benchmark, results, protocol=protocol)


def _oracle_threshold(gains: np.ndarray) -> float:
    """The oracle's threshold: the least gain by which the strong model beats the weak one, so that
    "strong when score >= threshold" calls it only where it does better. At 0 every tie went strong
    too, paying the strong model for nothing (on MMLU 95% strong calls; it does better on 18%)."""
    better = gains[gains > 0]
    return float(better.min()) if better.size else 1.0  # never better: 1 exceeds every gain (<= 0)


def evaluation_of(benchmark: Benchmark, results: list[RouterResult], *, protocol: str) -> Evaluation:
    """An :class:`Evaluation` of ``results`` on ``benchmark``: the two models, their qualities and
    mean costs taken from the benchmark."""
    return Evaluation(
        benchmark=benchmark.name,
        protocol=protocol,
        strong_model=benchmark.strong_model,
        weak_model=benchmark.weak_model,
        strong_quality=float(benchmark.strong.mean()) * benchmark.scale,
        weak_quality=float(benchmark.weak.mean()) * benchmark.scale,
        n_prompts=len(benchmark),
        results=results,
        strong_cost=_mean_cost(benchmark, benchmark.strong_model),
        weak_cost=_mean_cost(benchmark, benchmark.weak_model),
    )


def _mean_cost(benchmark: Benchmark, model: str) -> float | None:
    return float(benchmark.costs[model].mean()) if model in benchmark.costs else None


def item_scores(evaluation: Evaluation, benchmark: Benchmark) -> Iterator[dict[str, Any]]:
    """Each item of ``benchmark`` (the one ``evaluation`` ran on) with its ``id``, ``prompt``, its
    ``category`` and ``cost`` per model when the benchmark has them, and every router's score under
    the router's name: the records of ``lmroute eval --save-scores``."""
    scored = [(r.router, r.scores) for r in evaluation.results if r.scores is not None]
    for i, prompt in enumerate(benchmark.prompts):
        record: dict[str, Any] = {"id": benchmark.ids[i], "prompt": prompt}
        if benchmark.categories:
            record["category"] = benchmark.categories[i]
        if benchmark.costs:
            record["cost"] = {model: float(c[i]) for model, c in benchmark.costs.items()}
        yield {**record, **{name: float(s[i]) for name, s in scored}}
