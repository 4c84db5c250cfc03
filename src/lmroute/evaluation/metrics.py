"""The RouteLLM paper's routing metrics as pure functions.

A *call–performance curve* pairs c, the share of prompts sent to the strong model, with r, the
mean quality of the answers under that routing. From it: PGR(r) = (r − r_weak) / (r_strong −
r_weak); APGR, the area under the PGR curve over c in [0, 1]; CPT(x), the least c whose quality
reaches PGR x.

Two ways to pick thresholds:

* ``paper``: the 11 edges of 10 equal-count quantile bins of the scores (``pandas.qcut``'s
  edges: linear-interpolated quantiles); a prompt goes strong when score ≥ edge, except at the
  last edge, which uses > so that the curve reaches c = 0. Where tied scores make edges coincide
  (``qcut`` raises there) the duplicate edges are kept: tied prompts are always routed together,
  so the points are the ones the router's own thresholds realise, whatever the prompts' order.
  That is not the mean over orders of breaking the ties: where an edge falls inside a group of
  ties, a broken tie would put a point inside the group's segment, here it sits at the group's
  end (11 prompts tied with no gain and 9 tied with gain 1: APGR .775 here, .772 in every order).
* ``exact``: every distinct score is a threshold, giving the true curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmroute.exceptions import ConfigError

PROTOCOLS = ("paper", "exact")


@dataclass(frozen=True)
class Curve:
    """A call–performance curve, sorted by strong-call share ``c`` (in [0, 1])."""

    c: np.ndarray
    quality: np.ndarray
    thresholds: np.ndarray

    def to_points(self) -> list[dict[str, float]]:
        return [
            {"strong_share": float(c), "quality": float(q), "threshold": float(t)}
            for c, q, t in zip(self.c, self.quality, self.thresholds, strict=True)
        ]


def _validate(scores, strong, weak) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    strong = np.asarray(strong, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    if scores.ndim != 1 or scores.shape != strong.shape or scores.shape != weak.shape:
        raise ConfigError(
            f"scores, strong and weak qualities must be 1-d arrays of one length, got "
            f"{scores.shape}, {strong.shape}, {weak.shape}"
        )
    if scores.size == 0:
        raise ConfigError("cannot evaluate a router on zero prompts")
    if not (np.isfinite(scores).all() and np.isfinite(strong).all() and np.isfinite(weak).all()):
        raise ConfigError("scores and qualities must be finite numbers")
    return scores, strong, weak


def routed_quality(selection: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> float:
    """Mean quality when the prompts where ``selection`` is true go to the strong model."""
    return float(np.where(selection, strong, weak).mean())


def paper_curve(scores, strong, weak, *, bins: int = 10) -> Curve:
    """The reference implementation's curve: thresholds at the ``bins + 1`` quantile edges."""
    scores, strong, weak = _validate(scores, strong, weak)
    if bins < 1:
        raise ConfigError("bins must be at least 1")
    edges = np.quantile(scores, np.linspace(0.0, 1.0, bins + 1))
    cs, qs = [], []
    for i, edge in enumerate(edges):
        selection = scores > edge if i == len(edges) - 1 else scores >= edge
        cs.append(selection.mean())
        qs.append(routed_quality(selection, strong, weak))
    order = np.argsort(np.asarray(cs), kind="stable")
    return Curve(np.asarray(cs)[order], np.asarray(qs)[order], edges[order])


def exact_curve(scores, strong, weak) -> Curve:
    """The true curve: one point per distinct score, plus c = 0 (all weak)."""
    scores, strong, weak = _validate(scores, strong, weak)
    n = scores.size
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    gain = np.cumsum((strong - weak)[order])
    # The last index of each group of tied scores: a threshold there takes the whole group.
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    base = weak.mean()
    c = np.concatenate([[0.0], (ends + 1) / n])
    quality = np.concatenate([[base], base + gain[ends] / n])
    thresholds = np.concatenate([[np.inf], sorted_scores[ends]])
    return Curve(c, quality, thresholds)


def curve(scores, strong, weak, *, protocol: str = "paper") -> Curve:
    """The call–performance curve under ``protocol`` (``paper`` or ``exact``)."""
    if protocol == "paper":
        return paper_curve(scores, strong, weak)
    if protocol == "exact":
        return exact_curve(scores, strong, weak)
    raise ConfigError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


def equal_quality(strong_quality: float, weak_quality: float) -> bool:
    """Whether two mean qualities are equal up to rounding, so that PGR is undefined.

    Means of equal sums can differ in the last bit (0.1 + 0.2 + 0.3 against 0.3 + 0.2 + 0.1), and
    dividing by such a gap gives a PGR of 10^15; no real gap is within a billionth of the means.
    """
    return math.isclose(strong_quality, weak_quality, rel_tol=1e-9, abs_tol=1e-12)


def pgr(quality: float | np.ndarray, strong_quality: float, weak_quality: float):
    """Performance gap recovered: 0 at the weak model's quality, 1 at the strong model's."""
    gap = strong_quality - weak_quality
    if equal_quality(strong_quality, weak_quality):
        raise ConfigError("strong and weak models have equal quality: PGR is undefined")
    return (np.asarray(quality, dtype=np.float64) - weak_quality) / gap


def auc(c: np.ndarray, quality: np.ndarray) -> float:
    """Trapezoid area under quality over strong-call share."""
    return float(np.trapezoid(quality, c))


def apgr(c: np.ndarray, quality: np.ndarray, strong_quality: float, weak_quality: float) -> float:
    """Average PGR: the trapezoid area under PGR(c), normalised by the span of c (1 for a
    curve from 0 to 1), as the reference computes it."""
    c = np.asarray(c, dtype=np.float64)
    span = float(c.max() - c.min())
    if span == 0:
        raise ConfigError("a curve needs at least two strong-call shares")
    return float(np.trapezoid(pgr(quality, strong_quality, weak_quality), c) / span)


def cpt(
    c: np.ndarray,
    quality: np.ndarray,
    target_pgr: float,
    strong_quality: float,
    weak_quality: float,
) -> float:
    """Call-performance threshold: the least strong-call share whose PGR reaches
    ``target_pgr``, by linear interpolation between consecutive points sorted by c.

    On a non-decreasing curve this equals the reference's ``np.interp`` of c against quality; on a
    non-monotone one it is the first crossing. Returns NaN if the curve never reaches the target.
    """
    c = np.asarray(c, dtype=np.float64)
    # Compared as PGR, not quality: where the weak model is the better one, PGR rises as quality
    # falls, and a quality target would be "reached" at c = 0 whatever the router.
    gained = pgr(quality, strong_quality, weak_quality)
    reached = np.flatnonzero(gained >= target_pgr - 1e-12)
    if reached.size == 0:
        return float("nan")
    i = int(reached[0])
    if i == 0:
        return float(c[0])
    p0, p1 = gained[i - 1], gained[i]
    return float(c[i - 1] + (target_pgr - p0) / (p1 - p0) * (c[i] - c[i - 1]))


def quality_at(c: np.ndarray, quality: np.ndarray, share: float) -> float:
    """Quality at a strong-call share, interpolated along the curve."""
    return float(np.interp(share, c, quality))


def oracle_scores(strong, weak) -> np.ndarray:
    """Scores of the oracle router: how much better the strong model did on each prompt."""
    return np.asarray(strong, dtype=np.float64) - np.asarray(weak, dtype=np.float64)
