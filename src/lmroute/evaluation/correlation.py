"""Does one quantity predict another across a few runs? Correlations with an honest p-value.

Made for the question of the RouteLLM paper's similarity score: across leave-one-source-out runs,
does the similarity of the left-out source to the training data predict the router's APGR on it?
With one point per source there are few points, so the p-value of Spearman's rank correlation is
a permutation test: exact (every ordering of the points) when there are few enough orderings,
else from seeded random orderings.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lmroute.exceptions import ConfigError


@dataclass(frozen=True)
class Correlation:
    """Pearson's r and Spearman's rho of n points, and rho's two-sided permutation p-value."""

    n: int
    pearson: float
    spearman: float
    p_value: float
    #: Orderings the p-value counts over; ``exact``: every one of the n! orderings.
    permutations: int
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pair(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ConfigError(f"x and y must be 1-d arrays of one length, got {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ConfigError(f"a correlation needs at least 3 points, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ConfigError("x and y must be finite numbers")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ConfigError("x or y is constant: its correlation is undefined")
    return x, y


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson's correlation coefficient of ``x`` and ``y``."""
    x, y = _pair(x, y)
    dx, dy = x - x.mean(), y - y.mean()
    return float(dx @ dy / math.sqrt((dx @ dx) * (dy @ dy)))


def ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks from 1, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values), dtype=np.float64)
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's of the ranks (ties get mean ranks)."""
    x, y = _pair(x, y)
    return pearson(ranks(x), ranks(y))


def correlation(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    permutations: int = 20_000,
    seed: int = 0,
) -> Correlation:
    """Both correlations of ``x`` and ``y`` and the two-sided permutation p-value of Spearman's rho.

    The p-value is the share of orderings of ``y`` whose |rho| is at least the observed one:
    over all n! orderings when n! <= ``permutations``, else over ``permutations`` random ones
    (seeded) with the observed ordering counted once, (hits + 1) / (permutations + 1).
    """
    x, y = _pair(x, y)
    if permutations < 1:
        raise ConfigError(f"permutations must be at least 1, got {permutations}")
    rx, ry = ranks(x), ranks(y)
    observed = pearson(rx, ry)
    n = len(x)
    # A permuted rho equal to the observed one up to rounding counts as reaching it.
    reach = abs(observed) - 1e-12
    if math.factorial(n) <= permutations:
        orders = np.asarray(list(itertools.permutations(range(n))))
        rhos = _rank_correlations(rx, ry[orders])
        hits, total, exact = int(np.sum(np.abs(rhos) >= reach)), len(orders), True
        p_value = hits / total
    else:
        rng = np.random.default_rng(seed)
        orders = np.argsort(rng.random((permutations, n)), axis=1)
        rhos = _rank_correlations(rx, ry[orders])
        hits, total, exact = int(np.sum(np.abs(rhos) >= reach)), permutations, False
        p_value = (hits + 1) / (total + 1)
    return Correlation(n, pearson(x, y), observed, p_value, total, exact)


def _rank_correlations(rx: np.ndarray, ry_rows: np.ndarray) -> np.ndarray:
    """Pearson's r of ``rx`` with each row of ``ry_rows`` (all rows are orderings of one vector)."""
    dx = rx - rx.mean()
    dy = ry_rows - ry_rows.mean(axis=1, keepdims=True)
    return (dy @ dx) / math.sqrt(dx @ dx) / np.sqrt(np.sum(dy * dy, axis=1))
