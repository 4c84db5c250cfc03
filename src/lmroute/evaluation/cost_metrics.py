"""Cost–quality metrics of routing among N models, as pure functions (RouterBench's).

A routing policy realises a point: the mean cost of the chosen models and the mean quality of
their answers. Sweeping the policy's knob gives a set of points, and every single model is a
point too. Paying more can always be avoided and two policies can be mixed (send a random share
of prompts to each), so what a set of points achieves at cost ``c`` is its *non-decreasing upper
convex hull* at ``c`` (:func:`upper_hull`): the hull of the single models is the **mixing
baseline** a router has to beat.

* :func:`aiq`: the area under a hull over a cost range, divided by the range (RouterBench's average
  improvement in quality). Left of a hull's cheapest point it contributes nothing (no mix of its
  points costs that little); right of its dearest it stays at its best quality.
* :func:`reach_cost`: the least cost at which a hull reaches a quality (e.g. the best single
  model's); :func:`hull_quality`: a hull's quality at a cost (e.g. the cheapest model's).
"""

from __future__ import annotations

import numpy as np

from lmroute.exceptions import ConfigError

_EPS = 1e-12


def upper_hull(cost: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-decreasing upper convex hull of points ``(cost[i], quality[i])``: its vertices,
    by increasing cost, from the best of the cheapest points to the best point."""
    c, q = _points(cost, quality)
    order = np.lexsort((-q, c))  # by cost, the better first among equal costs
    vertices: list[tuple[float, float]] = []
    for x, y in zip(c[order].tolist(), q[order].tolist(), strict=True):
        if vertices and y <= vertices[-1][1] + _EPS:
            continue  # costs no less and is no better than a point already kept
        while len(vertices) >= 2 and _cross(vertices[-2], vertices[-1], (x, y)) >= -_EPS:
            vertices.pop()  # the last vertex lies on or under the chord: not on the hull
        vertices.append((x, y))
    hull = np.array(vertices)
    return hull[:, 0], hull[:, 1]


def hull_quality(hull_cost: np.ndarray, hull_q: np.ndarray, at: float | np.ndarray) -> np.ndarray:
    """A hull's quality at cost(s) ``at``: interpolated, its best quality right of it, NaN left of it."""
    at = np.asarray(at, dtype=np.float64)
    values = np.interp(at, hull_cost, hull_q)
    return np.where(at < hull_cost[0] - _EPS, np.nan, values)


def aiq(hull_cost: np.ndarray, hull_q: np.ndarray, low: float, high: float) -> float:
    """Area under the hull over ``[low, high]`` divided by ``high - low`` (see the module notes)."""
    if not high > low:
        raise ConfigError(f"AIQ needs a cost range with high > low, got [{low}, {high}]")
    start = max(low, float(hull_cost[0]))
    if start >= high:
        return 0.0
    inside = hull_cost[(hull_cost > start) & (hull_cost < high)]
    xs = np.concatenate([[start], inside, [high]])
    return float(np.trapezoid(hull_quality(hull_cost, hull_q, xs), xs) / (high - low))


def reach_cost(hull_cost: np.ndarray, hull_q: np.ndarray, target: float) -> float:
    """The least cost at which the hull's quality reaches ``target``; NaN if it never does."""
    reached = np.flatnonzero(hull_q >= target - _EPS)
    if reached.size == 0:
        return float("nan")
    i = int(reached[0])
    if i == 0:
        return float(hull_cost[0])
    q0, q1 = hull_q[i - 1], hull_q[i]
    return float(hull_cost[i - 1] + (target - q0) / (q1 - q0) * (hull_cost[i] - hull_cost[i - 1]))


def realised(choice: np.ndarray, scores: np.ndarray, costs: np.ndarray) -> tuple[float, float]:
    """Mean cost and mean quality when prompt ``i`` goes to model ``choice[i]``."""
    rows = np.arange(len(choice))
    return float(costs[rows, choice].mean()), float(scores[rows, choice].mean())


def _points(cost: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(cost, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if c.shape != q.shape or c.size == 0:
        raise ConfigError(
            f"a hull needs one cost per quality and at least one point, got {c.size} and {q.size}"
        )
    if not (np.isfinite(c).all() and np.isfinite(q).all()):
        raise ConfigError("costs and qualities must be finite")
    return c, q


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """> 0 when ``o -> a -> b`` turns left (a lies under the chord ``o -> b``)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
