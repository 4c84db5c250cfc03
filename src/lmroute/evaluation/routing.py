"""Evaluating routing among N models: cost–quality curves of a policy's knob sweep against every
single model, the mixing baseline (their hull) and the oracle (metrics: :mod:`.cost_metrics`).

Costs are in dollars per 1,000 requests. The router chooses on its *estimated* costs (the
catalogue's prices); the points are placed at the *realised* costs: a benchmark's own ``cost``
fields where every evaluated model has one on every line, else the same estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lmroute.evaluation import cost_metrics as cm
from lmroute.exceptions import ConfigError, DataError
from lmroute.policies import POLICIES, choose, lambda_grid, tau_grid

if TYPE_CHECKING:
    from lmroute.catalogue import Catalogue
    from lmroute.data.custom import ScoreTable
    from lmroute.routers.base import Router


@dataclass(frozen=True)
class Curve:
    """A set of routing points, its hull and what it achieves against the single models."""

    label: str
    knobs: np.ndarray
    cost: np.ndarray
    quality: np.ndarray
    hull_cost: np.ndarray
    hull_quality: np.ndarray
    aiq: float
    #: Least cost at which the hull reaches the best single model's quality (NaN: never).
    reach_cost: float
    #: ``1 - reach_cost / best single model's cost``: what reaching that quality saves.
    saving: float
    #: The hull's quality at the cheapest single model's cost.
    quality_at_cheapest: float
    #: The policy whose knob values ``knobs`` are (None: the single models, ``knobs`` their indices).
    policy: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "policy": self.policy,
            "aiq": self.aiq,
            "reach_cost": _num(self.reach_cost),
            "saving": _num(self.saving),
            "quality_at_cheapest": _num(self.quality_at_cheapest),
            "points": [
                {"knob": float(k), "cost": float(c), "quality": float(q)}
                for k, c, q in zip(self.knobs, self.cost, self.quality, strict=True)
            ],
            "hull": [
                {"cost": float(c), "quality": float(q)}
                for c, q in zip(self.hull_cost, self.hull_quality, strict=True)
            ],
        }


@dataclass
class CostQualityEvaluation:
    """Routers' and the oracle's curves, the single models and their hull on one benchmark."""

    benchmark: str
    models: list[str]
    model_cost: np.ndarray
    model_quality: np.ndarray
    baseline: Curve
    curves: list[Curve] = field(default_factory=list)
    n_prompts: int = 0
    skipped: int = 0
    cost_source: str = "prices"

    @property
    def best(self) -> int:
        """Index of the best single model (the cheaper on a tie)."""
        return best_and_cheapest(self.model_cost, self.model_quality)[0]

    @property
    def cheapest(self) -> int:
        """Index of the cheapest single model (the better on a tie)."""
        return best_and_cheapest(self.model_cost, self.model_quality)[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "prompts": self.n_prompts,
            "skipped_lines": self.skipped,
            "cost_unit": "USD per 1,000 requests",
            "cost_source": self.cost_source,
            "models": [
                {"model": m, "cost": float(c), "quality": float(q)}
                for m, c, q in zip(self.models, self.model_cost, self.model_quality, strict=True)
            ],
            "best_model": self.models[self.best],
            "cheapest_model": self.models[self.cheapest],
            "mixing_baseline": self.baseline.to_dict(),
            "curves": [c.to_dict() for c in self.curves],
        }


def evaluate_choices(
    models: Sequence[str],
    scores: np.ndarray,
    costs: np.ndarray,
    routers: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    policy: str = "lambda",
    knobs: int = 200,
    oracle: bool = True,
    benchmark: str = "benchmark",
    cost_range: tuple[float, float] | None = None,
) -> CostQualityEvaluation:
    """The cost–quality evaluation from arrays ``(n_prompts, n_models)``: true ``scores`` and
    realised ``costs``, and per router label its (predicted quality, estimated cost), swept over
    ``knobs`` values of ``policy``. The oracle sweeps lambda over the true scores and costs. AIQ is
    taken over ``cost_range`` (default: from the cheapest single model's cost to the dearest's)."""
    scores = np.asarray(scores, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != costs.shape or scores.shape[1] != len(models):
        raise ConfigError(
            f"scores and costs must be (prompts, {len(models)}) arrays, got {scores.shape}, {costs.shape}"
        )
    if len(models) < 2:
        raise DataError(f"routing needs at least two models, got {len(models)}: {', '.join(models)}")
    if scores.shape[0] == 0:
        raise DataError("no prompts to evaluate")
    model_cost, model_quality = costs.mean(axis=0), scores.mean(axis=0)
    low, high = cost_range or (float(model_cost.min()), float(model_cost.max()))
    if not high > low:
        raise DataError("every model costs the same: there is no cost range to route over")
    best, cheapest = best_and_cheapest(model_cost, model_quality)
    target, best_cost, at = float(model_quality[best]), float(model_cost[best]), float(model_cost[cheapest])

    def curve(label: str, values: np.ndarray, c: np.ndarray, q: np.ndarray, swept: str | None) -> Curve:
        hc, hq = cm.upper_hull(c, q)
        reach = cm.reach_cost(hc, hq, target)
        return Curve(
            label,
            values,
            c,
            q,
            hc,
            hq,
            cm.aiq(hc, hq, low, high),
            reach,
            1.0 - reach / best_cost if best_cost > 0 else float("nan"),
            float(cm.hull_quality(hc, hq, at)),
            swept,
        )

    baseline = curve(
        "mixing baseline", np.arange(len(models), dtype=np.float64), model_cost, model_quality, None
    )
    ev = CostQualityEvaluation(
        benchmark, list(models), model_cost, model_quality, baseline, n_prompts=len(scores)
    )
    for label, (predicted, estimated) in (routers or {}).items():
        values, c, q = sweep(predicted, estimated, scores, costs, policy=policy, knobs=knobs)
        ev.curves.append(curve(label, values, c, q, policy))
    if oracle:
        values, c, q = sweep(scores, costs, scores, costs, policy="lambda", knobs=knobs)
        ev.curves.append(curve("oracle", values, c, q, "lambda"))
    return ev


def best_and_cheapest(cost: np.ndarray, quality: np.ndarray) -> tuple[int, int]:
    """Indices of the best model (the cheaper on a tie) and of the cheapest (the better on a tie).

    Means equal up to rounding tie: means of equal sums can differ in the last bit, which named a
    dearer model the best though a cheaper one did as well (the hulls reach its quality there).
    """
    top = np.isclose(quality, quality.max(), rtol=1e-9, atol=1e-12)
    least = np.isclose(cost, cost.min(), rtol=1e-9, atol=1e-12)
    return int(np.lexsort((cost, ~top))[0]), int(np.lexsort((-quality, ~least))[0])


def sweep(
    predicted: np.ndarray,
    estimated: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    *,
    policy: str = "lambda",
    knobs: int | np.ndarray = 200,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The knob values of ``policy`` and the realised (mean cost, mean quality) at each."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    if isinstance(knobs, (int, np.integer)):  # a count (numpy's integers too), else the values
        values = (
            lambda_grid(predicted, estimated, points=knobs)
            if policy == "lambda"
            else tau_grid(predicted, points=knobs)
        )
    else:
        values = np.asarray(knobs, dtype=np.float64)
    points = np.array([cm.realised(choose(policy, predicted, estimated, v), scores, costs) for v in values])
    return values, points[:, 0], points[:, 1]


def evaluate_router(
    router: Router,
    catalogue: Catalogue,
    table: ScoreTable,
    *,
    policy: str = "lambda",
    knobs: int = 200,
    label: str | None = None,
    oracle: bool = True,
) -> CostQualityEvaluation:
    """Route ``table``'s prompts among the catalogue's models with ``router`` (a benchmark column
    is the model's serving name, else its vocabulary name); rows lacking one are skipped. The oracle's
    curve is added unless ``oracle`` is false."""
    columns = [m.name if m.name in table.scores else m.vocabulary for m in catalogue.models]
    if len(columns) < 2:
        raise DataError("N-model routing needs at least two models")
    rows, skipped = table.complete(columns)
    prompts = list(rows.prompts)
    scores = np.column_stack([rows.scores[m] for m in columns])
    estimated = catalogue.costs(prompts)
    file_costs = [rows.costs.get(m) for m in columns]
    if all(c is not None and np.isfinite(c).all() for c in file_costs):
        costs, source = np.column_stack(file_costs) * 1e3, "file"  # type: ignore[arg-type]
    else:
        costs, source = estimated, "prices"
    predicted = catalogue.predict_quality(router, prompts)
    ev = evaluate_choices(
        catalogue.names,
        scores,
        costs,
        {label or router.name: (predicted, estimated)},
        policy=policy,
        knobs=knobs,
        oracle=oracle,
        benchmark=table.name,
    )
    ev.skipped, ev.cost_source = skipped, source
    return ev


def summary_rows(ev: CostQualityEvaluation) -> list[dict[str, Any]]:
    """One row per router, the oracle, the mixing baseline and the best single model."""
    best = ev.best
    rows = [
        {
            "what": c.label,
            "aiq": c.aiq,
            "reach_cost": c.reach_cost,
            "saving": c.saving,
            "quality_at_cheapest": c.quality_at_cheapest,
        }
        for c in [*ev.curves, ev.baseline]
    ]
    rows.append(
        {
            "what": f"best single: {ev.models[best]}",
            "aiq": float("nan"),
            "reach_cost": float(ev.model_cost[best]),
            "saving": 0.0,
            "quality_at_cheapest": float("nan"),
        }
    )
    return rows


def format_summary(ev: CostQualityEvaluation) -> str:
    """A markdown table of :func:`summary_rows` with the benchmark's facts above it."""
    best, cheap = ev.best, ev.cheapest
    lines = [
        f"{ev.benchmark}: {ev.n_prompts} prompts ({ev.skipped} lines skipped), {len(ev.models)} models; "
        f"costs in $ per 1,000 requests ({ev.cost_source})",
        f"best single model {ev.models[best]}: quality {ev.model_quality[best]:.4f} at "
        f"${ev.model_cost[best]:.3f}; "
        f"cheapest {ev.models[cheap]}: {ev.model_quality[cheap]:.4f} at ${ev.model_cost[cheap]:.3f}",
        "",
        "| | AIQ | cost to reach best | saving | quality at cheapest's cost |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in summary_rows(ev):
        lines.append(
            f"| {r['what']} | {_fmt(r['aiq'], '.4f')} | {_fmt(r['reach_cost'], '.3f', '$')} | "
            f"{_fmt(100 * r['saving'], '.0f', suffix='%')} | {_fmt(r['quality_at_cheapest'], '.4f')} |"
        )
    return "\n".join(lines)


def _fmt(value: float, spec: str, prefix: str = "", suffix: str = "") -> str:
    return "–" if not np.isfinite(value) else f"{prefix}{value:{spec}}{suffix}"


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
