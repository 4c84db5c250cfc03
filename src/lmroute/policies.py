"""Routing among N models: pure policies over predicted quality and estimated cost.

Every policy takes ``quality`` and ``cost``, float arrays of shape ``(n_prompts, n_models)``
(quality on the router's common scale, :meth:`lmroute.routers.base.Router.predict_quality`; cost in
dollars per 1,000 requests, :meth:`lmroute.catalogue.Catalogue.costs`), and returns each prompt's
chosen model as an index ``(n_prompts,)`` into the models. Ties go to the cheaper model, then to
the earlier one; among equally cheap models reaching ``tau``, to the better predicted one.

* :func:`choose_by_lambda`: maximise ``quality - lambda * cost``. ``lambda`` is in quality per
  dollar per 1,000 requests: 0 takes the best predicted model whatever it costs, a large value the
  cheapest. With two models and one cost each it is the two-model threshold rule: the expensive
  model wins when ``q_strong - q_weak > lambda * (cost_strong - cost_weak)``
  (:func:`threshold_for_lambda`).
* :func:`choose_by_quality`: the cheapest model whose predicted quality is at least ``tau`` (of
  several as cheap, the better predicted); where none is, the best predicted one.

:func:`lambda_grid` and :func:`tau_grid` give the knob values where a policy's choices can change,
for sweeps and calibration.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from lmroute.exceptions import ConfigError

#: The knobs of the N-model policies (also the modes of ``router-<router>-<mode>-<value>``).
POLICIES = ("lambda", "quality")


def check_arrays(quality: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``quality`` and ``cost`` as float64 arrays of one ``(n, k)`` shape with k >= 1, finite, and
    costs not negative; ConfigError otherwise."""
    try:
        q = np.asarray(quality, dtype=np.float64)
        c = np.asarray(cost, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # None, text, or rows of unequal length
        raise ConfigError(f"quality and cost must be arrays of numbers ({exc})") from None
    if q.ndim != 2 or q.shape != c.shape or q.shape[1] == 0:
        raise ConfigError(
            f"quality and cost must be (prompts, models) arrays of one shape, got {q.shape}, {c.shape}"
        )
    if not (np.isfinite(q).all() and np.isfinite(c).all()):
        raise ConfigError("quality and cost must be finite numbers")
    if (c < 0).any():
        raise ConfigError("costs must not be negative")
    return q, c


def check_knob(policy: str, value: float) -> float:
    """``value`` as a float if it is a valid knob of ``policy``: lambda >= 0, tau in [0, 1]."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
    ):
        raise ConfigError(f"{policy} must be a finite number, got {value!r}")
    if policy == "lambda" and value < 0:
        raise ConfigError(f"lambda must be at least 0, got {value!r}")
    if policy == "quality" and not 0.0 <= value <= 1.0:
        raise ConfigError(f"the quality target tau must be in [0, 1], got {value!r}")
    return float(value)


def choose_by_lambda(quality: np.ndarray, cost: np.ndarray, lam: float) -> np.ndarray:
    """Per prompt, the model maximising ``quality - lam * cost`` (ties: the cheaper)."""
    lam = check_knob("lambda", lam)
    q, c = check_arrays(quality, cost)
    return _best(q - lam * c, c)


def choose_by_quality(quality: np.ndarray, cost: np.ndarray, tau: float) -> np.ndarray:
    """Per prompt, the cheapest model whose quality is at least ``tau`` (of several as cheap, the
    better predicted); else the best one."""
    tau = check_knob("quality", tau)
    q, c = check_arrays(quality, cost)
    good = q >= tau
    # Models of one price are common (many open-weight models at one host's rate): of those the
    # worse predicted one costs as much and is expected to do worse, so the better one is taken.
    least = np.where(good, c, np.inf).min(axis=1, keepdims=True)
    cheapest_good = _best(np.where(good & (c == least), q, -np.inf), c)
    return np.where(good.any(axis=1), cheapest_good, _best(q, c))


def choose(policy: str, quality: np.ndarray, cost: np.ndarray, value: float) -> np.ndarray:
    """The choices of policy ``"lambda"`` or ``"quality"`` at knob ``value``."""
    if policy == "lambda":
        return choose_by_lambda(quality, cost, value)
    if policy == "quality":
        return choose_by_quality(quality, cost, value)
    raise ConfigError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")


def ranked(policy: str, quality: np.ndarray, cost: np.ndarray, value: float) -> np.ndarray:
    """Per prompt, every model in the policy's order of preference ``(n, k)``: its choice first,
    then the next choice with that model removed, and so on (a server's fallbacks)."""
    check_knob(policy, value)
    q, c = check_arrays(quality, cost)
    order = np.empty(q.shape, dtype=np.int64)
    if q.size == 0:  # no prompts: q.min() below has nothing to reduce
        return order
    left = np.ones(q.shape, dtype=bool)
    rows = np.arange(q.shape[0])
    # A model already ranked is made worse than every model and dearer, so it is never chosen
    # again: below the least quality, not below a fixed -1, as shrunk qualities are not clipped.
    worst, dearest = q.min() - 1.0, c.max() + 1.0
    for j in range(q.shape[1]):
        pick = choose(policy, np.where(left, q, worst), np.where(left, c, dearest), value)
        order[:, j] = pick
        left[rows, pick] = False
    return order


def threshold_for_lambda(lam: float, cost_strong: float, cost_weak: float) -> float:
    """The two-model special case: :func:`choose_by_lambda` sends a prompt to the strong model
    when ``q_strong - q_weak`` exceeds this gap and to the weak one when it falls short (with one
    cost per model); at the gap itself, up to rounding, it takes the cheaper of the two, the
    earlier at one price (the strong model, when it is not the dearer)."""
    return check_knob("lambda", lam) * (cost_strong - cost_weak)


def lambda_grid(quality: np.ndarray, cost: np.ndarray, *, points: int = 200) -> np.ndarray:
    """``points`` lambdas from 0 to one above which every prompt takes its cheapest model,
    spaced where choices change: the quantiles of the pairwise break-even lambdas
    ``(q_i - q_j) / (c_i - c_j)`` over prompts and model pairs (plus 0 and the maximum)."""
    q, c = check_arrays(quality, cost)
    # One pair of models at a time: arrays of every pair at once, (prompts, models, models) each,
    # took several times the memory of the breaks themselves on a file of many prompts and models.
    found = []
    for i, j in itertools.combinations(range(q.shape[1]), 2):
        dq, dc = q[:, i] - q[:, j], c[:, i] - c[:, j]
        # the dearer of the two is the better: a lambda exists where they break even
        keep = ((dq > 0) & (dc > 0)) | ((dq < 0) & (dc < 0))
        pair = dq[keep] / dc[keep]
        found.append(pair[np.isfinite(pair)])
    breaks = np.concatenate(found) if found else np.zeros(0)
    if breaks.size == 0:
        return np.zeros(1)
    inner = np.quantile(breaks, np.linspace(0.0, 1.0, max(points - 2, 1)))
    return np.unique(np.concatenate([[0.0], inner, [breaks.max() * (1 + 1e-9) + 1e-12]]))


def tau_grid(quality: np.ndarray, *, points: int = 200) -> np.ndarray:
    """``points`` taus in [0, 1] at the quantiles of the predicted qualities, plus 0 and 1."""
    q = np.asarray(quality, dtype=np.float64).ravel()
    inner = np.quantile(q, np.linspace(0.0, 1.0, max(points - 2, 1))) if q.size else np.zeros(0)
    return np.unique(np.clip(np.concatenate([[0.0], inner, [1.0]]), 0.0, 1.0))


def _best(value: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per row, the index of the largest ``value``, the cheapest among exact ties (then the first)."""
    top = value.max(axis=1, keepdims=True)
    return np.where(value == top, cost, np.inf).argmin(axis=1)
