"""Routers compared on one deployed pair: intervals, paired differences, and the table.

Used by the pair-transfer experiment (:mod:`lmroute.workflows.pair_transfer`): a router trained
on one pair evaluated unchanged on another, beside the same router asked about that pair
(its *pair-aware* row) and the baselines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmroute.data.benchmarks import Benchmark
from lmroute.evaluation.bootstrap import APGR, CPT, bootstrap_metrics, interval
from lmroute.evaluation.evaluator import Evaluation, evaluate_scores

PAIR_AWARE = "pair-aware"

Interval = tuple[float, float]


@dataclass
class TransferRow:
    """One router on one pair: point estimates, 95% intervals and paired APGR differences."""

    router: str
    apgr: float
    apgr_ci: Interval
    cpt50: float
    cpt50_ci: Interval
    seeds: int = 1
    #: APGR minus another row's (each baseline; for a pair-aware row, the unchanged router):
    #: (difference, its 95% interval over the same resamples).
    versus: dict[str, tuple[float, Interval]] = field(default_factory=dict)

    def beats(self, other: str) -> bool | None:
        """Whether the interval of the APGR difference against ``other`` lies above 0 (None: not compared)."""
        return self.versus[other][1][0] > 0 if other in self.versus else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "router": self.router,
            "apgr": self.apgr,
            "apgr_ci95": list(self.apgr_ci),
            "cpt50": self.cpt50,
            "cpt50_ci95": list(self.cpt50_ci),
            "seeds": self.seeds,
            "apgr_minus": {k: {"diff": d, "ci95": list(ci)} for k, (d, ci) in self.versus.items()},
        }


@dataclass
class PairResult:
    """Every router on one (strong, weak) pair of one benchmark."""

    benchmark: str
    strong_model: str
    weak_model: str
    strong_quality: float
    weak_quality: float
    prompts: int
    #: Bootstrap resamples the intervals come from.
    resamples: int
    rows: list[TransferRow]
    #: The same results as an Evaluation (curves), for plots.
    evaluation: Evaluation | None = field(default=None, repr=False)

    def row(self, router: str) -> TransferRow:
        return next(r for r in self.rows if r.router == router)

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "strong_model": self.strong_model,
            "weak_model": self.weak_model,
            "strong_quality": self.strong_quality,
            "weak_quality": self.weak_quality,
            "prompts": self.prompts,
            "resamples": self.resamples,
            "rows": [r.to_dict() for r in self.rows],
        }


def compare_on_pair(
    bench: Benchmark,
    score_sets: Mapping[str, Sequence[np.ndarray]],
    *,
    baselines: Sequence[str],
    aware_of: Mapping[str, str] | None = None,
    protocol: str = "paper",
    samples: int = 1000,
    seed: int = 0,
) -> PairResult:
    """Metrics of every router (name -> its scores, one array per seed) on ``bench``'s pair.

    Each row's APGR is compared with each of ``baselines`` (names in ``score_sets``) and, for a
    pair-aware row, with the unchanged router it came from (``aware_of``: row -> router).
    """
    aware_of = dict(aware_of or {})
    boot = bootstrap_metrics(
        score_sets, bench.strong, bench.weak, protocol=protocol, samples=samples, seed=seed
    )
    results = {
        name: evaluate_scores(name, sets, bench, protocol=protocol) for name, sets in score_sets.items()
    }
    rows = []
    for name, res in results.items():
        apgr, cpt = boot[name][:, APGR], boot[name][:, CPT]
        row = TransferRow(name, res.apgr, interval(apgr), res.cpt50, interval(cpt), len(score_sets[name]))
        others = [b for b in baselines if b != name] + ([aware_of[name]] if name in aware_of else [])
        for other in others:
            row.versus[other] = (res.apgr - results[other].apgr, interval(apgr - boot[other][:, APGR]))
        rows.append(row)
    evaluation = Evaluation(
        benchmark=bench.name,
        protocol=protocol,
        strong_model=bench.strong_model,
        weak_model=bench.weak_model,
        strong_quality=float(bench.strong.mean()) * bench.scale,
        weak_quality=float(bench.weak.mean()) * bench.scale,
        n_prompts=len(bench),
        results=list(results.values()),
    )
    return PairResult(
        bench.name,
        bench.strong_model,
        bench.weak_model,
        evaluation.strong_quality,
        evaluation.weak_quality,
        len(bench),
        len(boot[next(iter(boot))]),
        rows,
        evaluation,
    )


def transfer_markdown(pairs: Sequence[PairResult], *, baselines: Sequence[str]) -> str:
    """One table over every pair: APGR and CPT(50%) with intervals, and the paired differences."""
    head = ["benchmark: strong / weak (quality)", "router", "APGR [95% CI]", "CPT(50%) [95% CI]"]
    head += [f"APGR − {b} [95% CI]" for b in baselines] + ["pair-aware − unchanged"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pair in pairs:
        title = (
            f"{pair.benchmark}: {pair.strong_model} / {pair.weak_model} "
            f"({pair.strong_quality:.1f} / {pair.weak_quality:.1f})"
        )
        for k, row in enumerate(pair.rows):
            name = row.router + (f" ({row.seeds} seeds)" if row.seeds > 1 else "")
            cells = [
                title if k == 0 else "",
                name,
                _ci(row.apgr, row.apgr_ci),
                _ci(row.cpt50, row.cpt50_ci, pct=True),
            ]
            cells += [_difference(row.versus.get(b)) for b in baselines]
            unchanged = [v for other, v in row.versus.items() if other not in baselines]
            cells.append(_difference(unchanged[0]) if unchanged else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ci(value: float, ci: Interval, *, pct: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    if pct:
        return f"{100 * value:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _difference(entry: tuple[float, Interval] | None) -> str:
    """A paired difference, in bold when its interval excludes 0."""
    if entry is None:
        return ""
    diff, (low, high) = entry
    text = f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]"
    return f"**{text}**" if low > 0 or high < 0 else text
