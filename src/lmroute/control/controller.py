"""The online controller: holds a target usage per request (a strong-call share, a spend rate) by
moving a knob (a threshold, a λ) from a sliding window of live requests.

Two parts, both in usage terms so one controller serves every knob:

* **feed-forward**: the setting is the one whose mean usage on the last ``window`` requests
  equals the effective target (for a share target, the window's score quantile). It follows a
  change in traffic as fast as the window fills with the new traffic.
* **feedback**: ``deficit`` counts, in units of one expensive choice (one strong call), how much
  the realized usage ran over the target since the start; the effective target is
  ``target - gain * deficit * marginal``. Over-spending lowers the effective target until the
  excess is paid back, so what the window's estimate gets wrong (noise, the lag after a shift)
  is corrected within about ``1 / gain`` requests. It is this integral term that holds the
  realized share of *any* stretch of requests near the target: over a stretch, the strong
  calls above target equal the change of ``deficit``, which stays small.

Bounded steps: a request moves the effective target by at most ``gain`` times one usage step and
the window by one row, so the setting moves by at most about ``gain + 1 / window`` of the window's
distribution per request: it never jumps across the distribution and, being a first-order loop
(one integral, no second state), it returns to the target without overshoot cycles. The deficit
is clipped one expensive choice beyond where the effective target leaves what the window can
give (all weak, all strong): the excess of the call that crossed that edge is still paid back
(clipped at the edge itself, a share target of 1% realized 1.9%: each strong call's excess was
mostly forgotten), in full even when that call is worth many expensive choices (a long prompt
under a spend target), while a debt that grows past the edge could only wind up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmroute.control.knobs import NO_STRONG, Knob
from lmroute.exceptions import ConfigError

#: Requests in the feed-forward window, and the feedback gain per unit of deficit.
DEFAULT_WINDOW = 200
DEFAULT_GAIN = 0.05
_TINY = 1e-12


@dataclass(frozen=True)
class ControllerStatus:
    """What a controller reports: its setting, and the usage realized against the target."""

    target: float
    setting: float
    #: Mean usage of the last ``window`` decisions (None before the first).
    realized: float | None
    #: Mean usage of every decision since the controller started.
    realized_total: float | None
    decisions: int
    deficit: float
    #: The target is out of reach on the recent traffic (all weak or all strong is as near as it gets).
    saturated: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class OnlineController:
    """Holds ``target`` mean usage per request by moving ``knob``; see the module docstring.

    ``seed`` rows (a calibration sample) fill the window before the first live request, so the
    first setting is the calibrated one; without them the knob's default is used until requests
    arrive (unless the first request alone puts the target out of reach). Call :meth:`setting_at`
    to decide a request and :meth:`observe` with its row and the choice actually made (which may
    differ, e.g. a conversation kept on its model).
    """

    def __init__(
        self,
        knob: Knob,
        target: float,
        *,
        window: int = DEFAULT_WINDOW,
        gain: float = DEFAULT_GAIN,
        seed: np.ndarray | None = None,
    ):
        if window < 1:
            raise ConfigError(f"the controller's window must hold at least one request, got {window}")
        if not 0.0 <= gain <= 1.0:
            raise ConfigError(f"the controller's gain must be in [0, 1], got {gain}")
        self.knob = knob
        self.target = float(target)
        self.window = int(window)
        self.gain = float(gain)
        self._rows = np.zeros((self.window, knob.width))
        self._used = np.zeros(self.window)  # usage of the last decisions, a ring beside the rows
        self._next = 0  # ring position of the next row
        self._filled = 0  # rows in the window (seed rows count)
        self._decided = 0  # live decisions, which fill _used
        self.decisions = 0
        self.usage_total = 0.0
        self.deficit = 0.0
        if seed is not None and len(seed):
            rows = np.asarray(seed, dtype=np.float64).reshape(-1, knob.width)[-self.window :]
            self._rows[: len(rows)] = rows
            self._filled = len(rows)
            self._next = len(rows) % self.window
        self.setting = self._settle(self._window_rows(), *knob.usage_range(self._window_rows()))

    # -- the loop ------------------------------------------------------------------------------
    def setting_at(self, row: np.ndarray) -> float:
        """The setting ``row`` is decided at: the current one, except before the first row, when
        a target out of reach on ``row`` itself takes the knob's end (a share of 0 or 1, a spend
        below the weak model's cost: all weak or all strong from the first request on, not the
        knob's default)."""
        if self._filled:
            return self.setting
        low, high = self.knob.usage_range(row[None])
        if low < self.target < high:
            return self.setting
        return self.knob.setting_for(row[None], self.target)

    def decide(self, row: np.ndarray) -> int:
        """The knob's choice for ``row`` at :meth:`setting_at` (nothing is recorded)."""
        return self.knob.choose(row, self.setting_at(row))

    def observe(self, row: np.ndarray, choice: int) -> float:
        """Record a decision: ``row`` joins the window, the deficit takes its usage, the setting
        moves. Returns the choice's usage."""
        used = self.knob.usage(row, choice)
        self._rows[self._next] = row
        self._used[self._next] = used
        self._next = (self._next + 1) % self.window
        self._filled = min(self._filled + 1, self.window)
        self._decided = min(self._decided + 1, self.window)
        self.decisions += 1
        self.usage_total += used
        rows = self._window_rows()
        low, high = self.knob.usage_range(rows)
        before = self.deficit
        self.deficit += (used - self.target) / max(high - low, _TINY)
        self.setting = self._settle(rows, low, high, before=before)
        return used

    def resettle(self) -> None:
        """Settle the setting on the window as it is now (its rows' usages changed: re-priced)."""
        rows = self._window_rows()
        self.setting = self._settle(rows, *self.knob.usage_range(rows))

    def _window_rows(self) -> np.ndarray:
        return self._rows[: self._filled] if self._filled < self.window else self._rows

    def _settle(self, rows: np.ndarray, low: float, high: float, *, before: float | None = None) -> float:
        """Clip the deficit to what the window can pay back, plus one expensive choice (the module
        notes); the setting for the effective target.

        ``low`` and ``high`` are the window's mean usage all cheap and all expensive; their
        difference is the usage of one expensive choice (1 for a share target), the deficit's unit.
        ``before`` is the deficit before the decision just observed: that decision's whole excess
        is kept when the deficit was within the edges before it, however many expensive choices
        it is worth (one request priced at ten average strong calls); past an edge the deficit
        may shrink, but grows no further than one expensive choice beyond it."""
        scale = self.gain * max(high - low, _TINY)
        if len(rows) and scale > 0:
            edge_low, edge_high = (self.target - high) / scale, (self.target - low) / scale
            lowest, highest = edge_low - 1.0, edge_high + 1.0
            if before is not None:
                highest = max(highest, before) if before > edge_high else math.inf
                lowest = min(lowest, before) if before < edge_low else -math.inf
            self.deficit = min(max(self.deficit, lowest), highest)
        return self.knob.setting_for(rows, self.target - scale * self.deficit)

    # -- reporting -----------------------------------------------------------------------------
    def status(self) -> ControllerStatus:
        """The setting and the realized usage (last window and since the start)."""
        rows = self._window_rows()
        low, high = self.knob.usage_range(rows)
        recent = self._recent_usage()
        return ControllerStatus(
            target=self.target,
            setting=self.setting,
            realized=float(recent.mean()) if len(recent) else None,
            realized_total=self.usage_total / self.decisions if self.decisions else None,
            decisions=self.decisions,
            deficit=self.deficit,
            saturated=bool(len(rows)) and not (low <= self.target <= high),
        )

    def _recent_usage(self) -> np.ndarray:
        if self._decided < self.window:
            # The last _decided entries before _next (the ring may not have wrapped yet).
            return np.take(self._used, range(self._next - self._decided, self._next), mode="wrap")
        return self._used

    # -- state -------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this controller is (JSON-ready)."""
        order = [(self._next - self._filled + i) % self.window for i in range(self._filled)]
        used = [(self._next - self._decided + i) % self.window for i in range(self._decided)]
        return {
            "target": self.target,
            "window": self.window,
            "gain": self.gain,
            "rows": self._rows[order].tolist(),
            "used": self._used[used].tolist(),
            "decisions": self.decisions,
            "usage_total": self.usage_total,
            "deficit": self.deficit,
            "setting": self.setting,
        }

    @classmethod
    def from_state(cls, knob: Knob, state: Mapping[str, Any]) -> OnlineController:
        """The controller :meth:`to_state` described; ConfigError when the state does not fit."""
        try:
            self = cls(knob, float(state["target"]), window=int(state["window"]), gain=float(state["gain"]))
            rows = np.asarray(state["rows"], dtype=np.float64).reshape(-1, knob.width)
            used = np.asarray(state["used"], dtype=np.float64).reshape(-1)
            if len(rows) > self.window or len(used) > min(len(rows), self.window):
                raise ValueError("more rows than the window holds")
            self._rows[: len(rows)] = rows
            self._filled = len(rows)
            self._next = len(rows) % self.window
            # the usages belong to the last len(used) rows
            self._used[(self._next - len(used) + np.arange(len(used))) % self.window] = used
            self._decided = len(used)
            self.decisions = int(state["decisions"])
            self.usage_total = float(state["usage_total"])
            self.deficit = float(state["deficit"])
            self.setting = float(state["setting"])
        # OverflowError: JSON reads Infinity and integers of any length, which int() and float() refuse
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"controller state does not fit: {exc}") from None
        # JSON readers take NaN and Infinity: one would reach every threshold and every report.
        numbers = [self.target, self.deficit, self.setting, self.usage_total]
        if not (np.isfinite(rows).all() and np.isfinite(used).all() and np.isfinite(numbers).all()):
            raise ConfigError("controller state holds numbers that are not finite")
        if self.decisions < 0 or not 0.0 <= self.setting <= NO_STRONG:
            raise ConfigError("controller state holds a negative count or a setting outside [0, 1]")
        return self
