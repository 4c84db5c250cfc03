"""Bootstrap intervals of routing metrics, paired across routers.

Every router is measured on the same resamples of the items (drawn with replacement), so the
difference between two routers' APGR on a resample is a paired difference: its interval says
whether one router beats the other on this benchmark beyond the luck of which items it holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lmroute.evaluation import metrics
from lmroute.exceptions import ConfigError

#: Columns of the arrays :func:`bootstrap_metrics` returns.
APGR, CPT = 0, 1


def bootstrap_metrics(
    score_sets: Mapping[str, Sequence[np.ndarray]],
    strong: np.ndarray,
    weak: np.ndarray,
    *,
    protocol: str = "paper",
    samples: int = 1000,
    seed: int = 0,
    target: float = 0.5,
) -> dict[str, np.ndarray]:
    """Each router's APGR and CPT(``target``) on ``samples`` resamples of the items.

    ``score_sets`` maps a router's name to its scores, one array per seed (a stochastic router's
    values on a resample are the means over its seeds, as in evaluation). Returns name -> array of
    shape (kept resamples, 2), columns :data:`APGR` and :data:`CPT`, the rows of every router
    from the same resamples. A resample on which the strong and weak models are equal on average
    (PGR undefined) is left out for every router.
    """
    strong = np.asarray(strong, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    n = len(strong)
    if samples < 1:
        raise ConfigError(f"bootstrap samples must be at least 1, got {samples}")
    if not score_sets or any(len(sets) == 0 for sets in score_sets.values()):
        raise ConfigError("every router needs at least one array of scores")
    for name, sets in score_sets.items():
        if any(np.shape(s) != (n,) for s in sets):
            raise ConfigError(f"scores of {name!r} must have one value per item ({n})")
    rng = np.random.default_rng(seed)
    rows: dict[str, list[list[float]]] = {name: [] for name in score_sets}
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        s, w = strong[idx], weak[idx]
        s_q, w_q = float(s.mean()), float(w.mean())
        if metrics.equal_quality(s_q, w_q):
            continue
        for name, sets in score_sets.items():
            values = []
            for scores in sets:
                cur = metrics.curve(np.asarray(scores)[idx], s, w, protocol=protocol)
                values.append(
                    (
                        metrics.apgr(cur.c, cur.quality, s_q, w_q),
                        metrics.cpt(cur.c, cur.quality, target, s_q, w_q),
                    )
                )
            rows[name].append(list(np.mean(values, axis=0)))
    if not rows[next(iter(rows))]:
        raise ConfigError("on every resample the strong and weak models were equal: no interval")
    return {name: np.asarray(r, dtype=np.float64) for name, r in rows.items()}


def interval(values: np.ndarray, *, level: float = 0.95) -> tuple[float, float]:
    """The central percentile interval of ``values`` holding ``level`` of them (NaNs left out)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
