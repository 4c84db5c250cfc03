"""Calibrating the N-model policies: the lambda or tau that meets a budget or a target quality.

As a two-model threshold is chosen on a sample of prompts (:mod:`lmroute.calibration`), so is a
policy's knob: the router predicts each catalogue model's quality on the sample, the catalogue
estimates each model's cost on it, and the knob is swept (:func:`lmroute.policies.lambda_grid`,
:func:`~lmroute.policies.tau_grid`).

* **Budget** (dollars per 1,000 requests): the knob with the best mean predicted quality whose
  mean estimated cost is within the budget. A budget below the cost of sending every prompt to
  its cheapest model cannot be met: that is an error naming that least cost (no knob is chosen).
* **Target quality** (on the router's scale, :meth:`~lmroute.routers.base.Router.predict_quality`):
  the cheapest knob whose mean predicted quality reaches the target; an error naming the best
  reachable quality when none does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lmroute.exceptions import ConfigError
from lmroute.policies import choose, lambda_grid, tau_grid
from lmroute.routing_names import format_model_name

if TYPE_CHECKING:
    from lmroute.catalogue import Catalogue
    from lmroute.routers.base import Router


@dataclass(frozen=True)
class PolicyCalibration:
    """The knob chosen, and what it does on the sample: mean estimated cost ($ per 1,000
    requests), mean predicted quality and each model's share of the prompts."""

    policy: str
    value: float
    cost: float
    quality: float
    shares: dict[str, float]
    prompts: int
    #: What was asked: ``{"budget": x}`` or ``{"target_quality": x}``.
    goal: dict[str, float]
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep_knob(
    policy: str, quality: np.ndarray, cost: np.ndarray, *, points: int = 400
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knob values and, at each, the mean estimated cost and the mean predicted quality
    ``(values, costs, qualities)``."""
    grid = (
        lambda_grid(quality, cost, points=points) if policy == "lambda" else tau_grid(quality, points=points)
    )
    # the midpoints between the grid's break-even values, and its ends: a knob at a break-even
    # value decides ties by rounding, one between two is stable
    values = np.unique(np.concatenate([grid[:1], (grid[1:] + grid[:-1]) / 2, grid[-1:]]))
    rows = np.arange(quality.shape[0])
    costs, qualities = np.empty(len(values)), np.empty(len(values))
    # One value's choices at a time: all of them at once took 8 bytes per prompt and value, three
    # times over (6 GB for a million prompts).
    for i, value in enumerate(values):
        choices = choose(policy, quality, cost, value)
        costs[i], qualities[i] = cost[rows, choices].mean(), quality[rows, choices].mean()
    return values, costs, qualities


def knob_for_budget(
    policy: str, quality: np.ndarray, cost: np.ndarray, budget: float
) -> tuple[float, np.ndarray]:
    """The knob value whose mean estimated cost is within ``budget`` with the best mean predicted
    quality (the cheaper on a tie), and its choices; ConfigError below the least possible cost."""
    if not np.isfinite(budget) or budget < 0:
        raise ConfigError(f"the budget must be a number of dollars per 1,000 requests >= 0, got {budget!r}")
    values, costs, qualities = sweep_knob(policy, quality, cost)
    least = float(cost.min(axis=1).mean())
    within = np.flatnonzero(costs <= budget + 1e-12)
    if within.size == 0:
        reached = float(costs.min())
        if budget + 1e-12 >= least:
            # Shrunk qualities below 0 are below every tau >= 0: the quality policy then sends some
            # prompts past their cheapest model, and spends more than the models' least.
            raise ConfigError(
                f"a budget of ${budget:g} per 1,000 requests is below the least the {policy} policy spends "
                f"on these prompts: ${reached:.4g} (every prompt to its cheapest model would cost "
                f"${least:.4g}, but some cheapest models are predicted below every {policy} value); raise "
                "the budget or use the lambda policy"
            )
        raise ConfigError(
            f"a budget of ${budget:g} per 1,000 requests is below the least these models can cost on these "
            f"prompts: ${least:.4g} (every prompt to its cheapest model); raise the budget or add a "
            "cheaper model"
        )
    best = within[np.lexsort((costs[within], -qualities[within]))[0]]
    return float(values[best]), choose(policy, quality, cost, values[best])


def knob_for_quality(
    policy: str, quality: np.ndarray, cost: np.ndarray, target: float
) -> tuple[float, np.ndarray]:
    """The cheapest knob value whose mean predicted quality reaches ``target``, and its choices;
    ConfigError when no value does."""
    if not 0.0 <= target <= 1.0:
        raise ConfigError(f"the target quality is on the router's scale, in [0, 1]; got {target!r}")
    values, costs, qualities = sweep_knob(policy, quality, cost)
    reached = np.flatnonzero(qualities >= target - 1e-12)
    if reached.size == 0:
        raise ConfigError(
            f"no {policy} value reaches a mean predicted quality of {target:g} on these prompts; the best "
            f"reachable is {qualities.max():.4f}"
        )
    best = reached[np.lexsort((-qualities[reached], costs[reached]))[0]]
    return float(values[best]), choose(policy, quality, cost, values[best])


def calibrate_policy(
    router: Router,
    catalogue: Catalogue,
    prompts: Sequence[str],
    *,
    policy: str = "lambda",
    budget: float | None = None,
    target_quality: float | None = None,
    name: str | None = None,
) -> PolicyCalibration:
    """The knob of ``policy`` that meets ``budget`` ($ per 1,000 requests) or ``target_quality``
    (give exactly one) on ``prompts``, routing among the catalogue's models."""
    if (budget is None) == (target_quality is None):
        raise ConfigError("give either a budget ($ per 1,000 requests) or a target quality, not both")
    prompts = list(prompts)
    if not prompts:
        raise ConfigError("calibration needs at least one prompt")
    quality = catalogue.predict_quality(router, prompts)
    cost = catalogue.costs(prompts)
    if budget is not None:
        value, choices = knob_for_budget(policy, quality, cost, budget)
        goal = {"budget": float(budget)}
    else:
        assert target_quality is not None
        value, choices = knob_for_quality(policy, quality, cost, target_quality)
        goal = {"target_quality": float(target_quality)}
    rows = np.arange(len(prompts))
    counts = np.bincount(choices, minlength=len(catalogue)) / len(prompts)
    return PolicyCalibration(
        policy,
        value,
        float(cost[rows, choices].mean()),
        float(quality[rows, choices].mean()),
        {m: float(s) for m, s in zip(catalogue.names, counts, strict=True)},
        len(prompts),
        goal,
        format_model_name(name or router.name, value, mode=policy),
    )


def format_policy_calibration(result: PolicyCalibration, *, source: str = "") -> str:
    """What a person reads: the knob, its model name, the expected cost and each model's share."""
    goal = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in result.goal.items())
    lines = [
        f"{result.policy} = {result.value:.6g} for {goal} on {result.prompts} prompts"
        + (f" ({source})" if source else ""),
        f"model: {result.model}",
        f"expected cost: ${result.cost:.4f} per 1,000 requests; mean predicted quality {result.quality:.4f}",
        "share of prompts per model:",
    ]
    lines += [f"  {m}: {100 * s:.1f}%" for m, s in result.shares.items()]
    return "\n".join(lines)
