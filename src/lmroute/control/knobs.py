"""What an online controller turns: a knob whose usage per request falls as the knob rises.

The controller (:mod:`lmroute.control.controller`) knows nothing of models, scores or prices. It
keeps recent requests as rows of numbers and asks its knob three things: which choice a row gets
at a knob setting, what that choice uses, and which setting gives a mean usage on a set of rows.
*Usage* is what a target counts: 1 for a strong call and 0 for a weak one when holding a share,
the estimated dollars per 1,000 requests when holding a spend rate.

:class:`ThresholdKnob` is the two-model knob: a row is ``(score, weak usage, strong usage)`` and a
request goes to the strong model when its score is at least the threshold.

An N-model policy (maximise quality − λ·cost over N models) plugs in as another knob with the same
three methods: rows hold each model's predicted quality and estimated cost, :meth:`choose` takes
the argmax of ``quality - λ * cost``, usage is the chosen model's cost, and :meth:`setting_for`
finds λ on the rows by bisection (mean cost falls as λ rises). The controller is unchanged.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

#: Knob setting of a threshold knob with no rows to go by (the middle of the score range).
DEFAULT_THRESHOLD = 0.5
#: The threshold that sends no request to the strong model: just above every score, 1 included
#: (a saturated sigmoid or a clipped score is exactly 1, and would reach a threshold of 1).
NO_STRONG = float(np.nextafter(1.0, 2.0))


class Knob(Protocol):
    """A policy turned by one number; usage must not rise when the setting rises."""

    #: Numbers per row.
    width: int
    #: What the knob is called in reports (``threshold``, ``lambda``).
    name: str

    def choose(self, row: np.ndarray, setting: float) -> int:
        """The choice (an index: for two models 0 weak, 1 strong) for ``row`` at ``setting``."""
        ...

    def usage(self, row: np.ndarray, choice: int) -> float:
        """What ``choice`` uses for ``row``."""
        ...

    def usage_range(self, rows: np.ndarray) -> tuple[float, float]:
        """The least and the most mean usage any setting can give on ``rows``."""
        ...

    def setting_for(self, rows: np.ndarray, usage: float) -> float:
        """The setting whose mean usage on ``rows`` is nearest ``usage``."""
        ...


class ThresholdKnob:
    """Two models: strong when ``score >= threshold``; rows are ``(score, weak usage, strong usage)``."""

    width = 3
    name = "threshold"

    def choose(self, row: np.ndarray, setting: float) -> int:
        return 1 if row[0] >= setting else 0

    def usage(self, row: np.ndarray, choice: int) -> float:
        return float(row[2] if choice else row[1])

    def usage_range(self, rows: np.ndarray) -> tuple[float, float]:
        if not len(rows):
            return 0.0, 1.0
        low, high = rows[:, 1:].mean(axis=0)
        return float(low), float(high)

    def setting_for(self, rows: np.ndarray, usage: float) -> float:
        """The threshold between distinct scores whose mean usage on ``rows`` is nearest ``usage``
        (the smaller usage on a tie): the midpoint of the gap at that cut, so that a new score
        equal to a row's is routed as that row. At the ends the cut is all weak or all strong, and
        the threshold is :data:`NO_STRONG` or 0, so that a new score beyond the window's goes the
        same way: a share target of 0 (or a spend below the all-weak spend) sends nothing to the
        strong model, a share of 1 everything."""
        n = len(rows)
        if n == 0:
            return DEFAULT_THRESHOLD
        order = np.argsort(rows[:, 0])[::-1]
        scores = rows[order, 0]
        # extra[k]: usage above all-weak when the k highest scores go strong (non-decreasing in k).
        extra = np.empty(n + 1)
        extra[0] = 0.0
        np.cumsum((rows[:, 2] - rows[:, 1])[order], out=extra[1:])
        wanted = usage * n - rows[:, 1].sum()
        k = int(np.searchsorted(extra, wanted))
        if k > n or (k > 0 and wanted - extra[k - 1] <= extra[k] - wanted):
            k -= 1
        k = _nearest_cut(scores, extra, k, wanted)
        if k == 0:
            return NO_STRONG
        if k == n:
            return 0.0  # strong for all
        return float((scores[k - 1] + scores[k]) / 2)


def _nearest_cut(scores: np.ndarray, extra: np.ndarray, k: int, wanted: float) -> int:
    """``k`` moved to the nearest cut a threshold can make: tied scores go to one side together."""
    n = len(scores)
    if k in (0, n) or scores[k - 1] > scores[k]:
        return k
    tied = scores[k]
    below = int(np.searchsorted(-scores, -tied, side="left"))  # first row of the tie
    above = int(np.searchsorted(-scores, -tied, side="right"))  # first row after it
    return below if wanted - extra[below] <= extra[above] - wanted else above
