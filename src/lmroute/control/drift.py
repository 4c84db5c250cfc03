"""Drift detection: has the live traffic moved away from the traffic the router was calibrated on?

Two statistics compare the live traffic with a *reference* sample (the calibration prompts at
first), each over an exponentially weighted window of the last ``span`` requests (weight
``a = 2 / (span + 1)``):

* **scores**: the population stability index (PSI) of the live scores over the deciles of the
  reference scores, ``sum((live - ref) * ln(live / ref))``;
* **embeddings**: the squared distance between the live and the reference mean of a summary of
  the prompt embeddings (a fixed random projection to ``summary_dim`` dimensions, which keeps
  distances: :func:`summary_projection`).

With no drift both are near their expectation under sampling noise: ``(bins - 1) * v`` for the PSI
and ``trace(Σ) * v`` for the distance, where ``v = a / (2 - a) + 1 / m`` (the variance of the
weighted live mean plus that of the reference mean of ``m`` prompts) and ``Σ`` is the reference
summaries' covariance. Divided by it, each is close to a chi-square over its degrees of freedom
(``bins - 1``; ``trace(Σ)² / trace(Σ²)`` for the embeddings), and the alarm level is that
distribution's quantile at ``1 - false_alarm`` (Wilson–Hilferty). ``score_shift`` and
``embedding_shift`` are each statistic over its level: an alarm is raised when either passes 1.

After an alarm the detector is *drifted*: it collects the next ``reference_size`` requests as its
new reference and then watches again, so each later change raises its own alarm and one change
raises one (an *episode*). Without a calibration sample the first ``reference_size`` requests
are the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from lmroute.exceptions import ConfigError

#: Requests in the weighted window, prompts in a reference, and the false-alarm probability of one check.
DEFAULT_SPAN = 200
DEFAULT_REFERENCE_SIZE = 300
DEFAULT_FALSE_ALARM = 1e-6
DEFAULT_BINS = 10
DEFAULT_SUMMARY_DIM = 64
_FLOOR = 1e-4  # a bin's smallest proportion, so that an empty bin has a finite log
_MAX_BINS = 1000
#: The largest shift reported: one that overflows (summaries of 1e200 from a broken embedder, a
#: state file's live mean of 1e300) says the same as infinity, which no JSON status or state holds.
_LARGEST_SHIFT = float(np.finfo(np.float64).max)

State = Literal["collecting", "watching", "drifted"]


def summary_projection(dim: int, summary_dim: int = DEFAULT_SUMMARY_DIM, *, seed: int = 0) -> np.ndarray:
    """The ``(dim, summary_dim)`` random projection that summarises an embedding: Gaussian, scaled
    so that distances are kept on average (Johnson–Lindenstrauss), and fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim, summary_dim)) / np.sqrt(summary_dim)).astype(np.float32)


@lru_cache(maxsize=256)  # called per request with the same few arguments
def chi_square_level(dof: float, false_alarm: float) -> float:
    """The ``1 - false_alarm`` quantile of a chi-square with ``dof`` degrees of freedom, divided by
    ``dof`` (Wilson–Hilferty's approximation: within 3% for 9 or more degrees of freedom; with
    fewer it errs high, 7% at 3, which only makes false alarms rarer)."""
    z = NormalDist().inv_cdf(1.0 - false_alarm)
    c = 2.0 / (9.0 * dof)
    return float(max(1.0 - c + z * np.sqrt(c), 0.0) ** 3)


@dataclass(frozen=True)
class Reference:
    """What the live traffic is compared with, derived from a sample of ``size`` requests."""

    size: int
    #: Inner edges of the score bins (the sample's deciles).
    edges: np.ndarray
    #: The sample's share of scores in each bin.
    proportions: np.ndarray
    #: Mean and total variance of the embedding summaries, and their effective dimensions.
    mean: np.ndarray | None
    variance: float
    dof: float
    #: Where the sample came from: "calibration" or "traffic".
    source: str

    @classmethod
    def from_sample(
        cls, scores: np.ndarray, summaries: np.ndarray | None, *, bins: int, source: str
    ) -> Reference:
        scores = np.asarray(scores, dtype=np.float64)
        if not len(scores):
            raise ConfigError("a drift reference needs at least one score")
        edges = np.unique(np.quantile(scores, np.arange(1, bins) / bins))
        counts = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(edges) + 1)
        proportions = np.maximum(counts / len(scores), _FLOOR)
        mean, variance, dof = None, 0.0, 1.0
        if summaries is not None and len(summaries) == len(scores) and len(scores) > 1:
            centred = np.asarray(summaries, dtype=np.float64)
            mean = centred.mean(axis=0)
            centred = centred - mean
            gram = centred @ centred.T / len(scores)  # trace(Σ) = trace(gram), trace(Σ²) = ||gram||²
            variance = float(np.trace(gram))
            dof = variance**2 / max(float((gram**2).sum()), 1e-300) if variance > 0 else 1.0
        return cls(len(scores), edges, proportions, mean, variance, float(dof), source)

    def to_state(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "edges": self.edges.tolist(),
            "proportions": self.proportions.tolist(),
            "mean": None if self.mean is None else self.mean.tolist(),
            "variance": self.variance,
            "dof": self.dof,
            "source": self.source,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Reference:
        mean = state["mean"]
        reference = cls(
            int(state["size"]),
            np.asarray(state["edges"], dtype=np.float64).reshape(-1),
            np.asarray(state["proportions"], dtype=np.float64).reshape(-1),
            None if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1),
            float(state["variance"]),
            float(state["dof"]),
            str(state["source"]),
        )
        if len(reference.proportions) != len(reference.edges) + 1 or reference.size < 1:
            raise ValueError("reference bins do not match their edges")
        numbers = [reference.edges, reference.proportions, np.array([reference.variance, reference.dof])]
        if reference.mean is not None:
            numbers.append(reference.mean)
        if not all(np.isfinite(n).all() for n in numbers):
            raise ValueError("the reference holds numbers that are not finite")
        if (np.diff(reference.edges) <= 0).any():
            raise ValueError("the reference's bin edges do not increase")
        # What every sample gives (from_sample): a share floored at _FLOOR, and trace(S)^2 / trace(S^2)
        # at least 1 (1e-9 for rounding). Below them the shift overflowed to Infinity, or the alarm
        # level was 0 and every request raised ZeroDivisionError.
        if not ((reference.proportions >= _FLOOR) & (reference.proportions <= 1)).all():
            raise ValueError(f"the reference's bin shares are not all in [{_FLOOR}, 1]")
        if reference.dof < 1 - 1e-9 or reference.variance < 0:
            raise ValueError("the reference's embedding spread is not one a sample can have")
        return reference


def _alarm(state: Any) -> dict[str, Any] | None:
    """The last alarm of a saved state, checked (ValueError, TypeError or KeyError if it does not fit)."""
    if state is None:
        return None
    score = float(state["score_shift"])
    embedding = None if state["embedding_shift"] is None else float(state["embedding_shift"])
    if not np.isfinite([score, 0.0 if embedding is None else embedding]).all():
        raise ValueError("the last alarm's shifts are not finite")
    return {
        "request": int(state["request"]),
        "by": str(state["by"]),
        "score_shift": score,
        "embedding_shift": embedding,
    }


class DriftDetector:
    """Watches one router's traffic for drift; see the module docstring."""

    def __init__(
        self,
        *,
        span: int = DEFAULT_SPAN,
        reference_size: int = DEFAULT_REFERENCE_SIZE,
        false_alarm: float = DEFAULT_FALSE_ALARM,
        bins: int = DEFAULT_BINS,
    ):
        # bins from a state file: Infinity or 1e12 passed, and the next reference raised on a request
        bins_fit = isinstance(bins, int) and not isinstance(bins, bool) and 2 <= bins <= _MAX_BINS
        if span < 1 or reference_size < 2 or not bins_fit or not 0.0 < false_alarm < 0.5:
            raise ConfigError(
                f"drift settings: span >= 1, reference_size >= 2, bins an integer from 2 to {_MAX_BINS} "
                "and false_alarm in (0, 0.5)"
            )
        self.span = span
        self.reference_size = reference_size
        self.false_alarm = false_alarm
        self.bins = bins
        self._weight = 2.0 / (span + 1)
        self.reference: Reference | None = None
        self.state: State = "collecting"
        self.observed = 0
        self.alarms = 0
        self.last_alarm: dict[str, Any] | None = None
        self.score_shift = 0.0
        self.embedding_shift: float | None = None
        self._live_bins = np.zeros(0)
        self._live_mean: np.ndarray | None = None
        self._scores: list[float] = []  # the reference being collected
        self._summaries: list[np.ndarray] = []

    # -- reference ---------------------------------------------------------------------------
    def set_reference(
        self, scores: np.ndarray, summaries: np.ndarray | None = None, *, source: str = "calibration"
    ) -> None:
        """Compare the traffic from now on with this sample (scores, and embedding summaries or None)."""
        self.reference = Reference.from_sample(scores, summaries, bins=self.bins, source=source)
        self._live_bins = self.reference.proportions.copy()
        self._live_mean = None if self.reference.mean is None else self.reference.mean.copy()
        self._scores, self._summaries = [], []
        self.state = "watching"
        self.score_shift = 0.0
        self.embedding_shift = None if self.reference.mean is None else 0.0

    # -- the live traffic ----------------------------------------------------------------------
    def observe(self, score: float, summary: np.ndarray | None = None) -> bool:
        """Take one request; True when it raises an alarm (the first of an episode)."""
        self.observed += 1
        if summary is not None and not np.isfinite(summary).all():
            # A broken embedding: kept, it would stay in the weighted live mean for good, making
            # the shift NaN in every report and the state file unsaveable. The score still counts.
            summary = None
        if self.state != "watching":
            self._collect(score, summary)
        if self.reference is None:
            return False
        a = self._weight
        self._live_bins *= 1.0 - a
        self._live_bins[int(np.searchsorted(self.reference.edges, score, side="right"))] += a
        noise = a / (2.0 - a) + 1.0 / self.reference.size
        live = np.maximum(self._live_bins, _FLOOR)
        ref = self.reference.proportions
        psi = float(((live - ref) * np.log(live / ref)).sum())
        dof = len(ref) - 1
        self.score_shift = psi / (max(dof, 1) * noise) / chi_square_level(max(dof, 1), self.false_alarm)
        shifts = [self.score_shift]
        # A summary of another length (a reference restored from a state file written with another
        # summary_dim) cannot be compared: the scores are still watched.
        if (
            self._live_mean is not None
            and summary is not None
            and self.reference.mean is not None
            and len(summary) == len(self._live_mean)
        ):
            self._live_mean += a * (np.asarray(summary, dtype=np.float64) - self._live_mean)
            gap = self._live_mean - self.reference.mean
            with np.errstate(over="ignore"):  # an overflow is reported as the largest shift
                distance = float(gap @ gap) / max(self.reference.variance * noise, 1e-300)
            level = chi_square_level(self.reference.dof, self.false_alarm)
            self.embedding_shift = min(distance / level, _LARGEST_SHIFT)
            shifts.append(self.embedding_shift)
        if self.state != "watching" or max(shifts) <= 1.0:
            return False
        self.state = "drifted"
        self.alarms += 1
        self.last_alarm = {
            "request": self.observed,
            "by": "scores" if self.score_shift > 1.0 else "embeddings",
            "score_shift": self.score_shift,
            "embedding_shift": self.embedding_shift,
        }
        return True

    def _collect(self, score: float, summary: np.ndarray | None) -> None:
        self._scores.append(float(score))
        # One of another length than those collected (restored from a state file written with
        # another summary_dim) cannot be averaged with them: left out, the reference is of the
        # scores alone, as it is when a request has no summary.
        if summary is not None and (not self._summaries or len(summary) == len(self._summaries[0])):
            self._summaries.append(np.asarray(summary, dtype=np.float64))
        if len(self._scores) >= self.reference_size:
            summaries = np.stack(self._summaries) if len(self._summaries) == len(self._scores) else None
            self.set_reference(np.asarray(self._scores), summaries, source="traffic")

    # -- reporting and state -------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """State, the two statistics over their alarm levels, and the alarms so far."""
        return {
            "state": self.state,
            # Progress of the reference taken from the traffic (at the start and after an alarm).
            "collected": len(self._scores),
            "reference_size": self.reference_size,
            "reference": None if self.reference is None else self.reference.source,
            "score_shift": self.score_shift,
            "embedding_shift": self.embedding_shift,
            "alarms": self.alarms,
            "last_alarm": self.last_alarm,
            "observed": self.observed,
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "settings": {
                "span": self.span,
                "reference_size": self.reference_size,
                "false_alarm": self.false_alarm,
                "bins": self.bins,
            },
            "reference": None if self.reference is None else self.reference.to_state(),
            "state": self.state,
            "observed": self.observed,
            "alarms": self.alarms,
            "last_alarm": self.last_alarm,
            "score_shift": self.score_shift,
            "embedding_shift": self.embedding_shift,
            "live_bins": self._live_bins.tolist(),
            "live_mean": None if self._live_mean is None else self._live_mean.tolist(),
            "collected_scores": list(self._scores),  # a copy: the state is written in another thread
            "collected_summaries": [s.tolist() for s in self._summaries],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DriftDetector:
        """The detector :meth:`to_state` described; ConfigError when the state does not fit."""
        try:
            self = cls(**{k: state["settings"][k] for k in ("span", "reference_size", "false_alarm", "bins")})
            if state["reference"] is not None:
                self.reference = Reference.from_state(state["reference"])
            if state["state"] not in ("collecting", "watching", "drifted"):
                raise ValueError(f"unknown state {state['state']!r}")
            self.state = state["state"]
            self.observed = int(state["observed"])
            self.alarms = int(state["alarms"])
            self.last_alarm = _alarm(state["last_alarm"])
            self.score_shift = float(state["score_shift"])
            shift = state["embedding_shift"]
            self.embedding_shift = None if shift is None else float(shift)
            self._live_bins = np.asarray(state["live_bins"], dtype=np.float64).reshape(-1)
            mean = state["live_mean"]
            self._live_mean = None if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1)
            self._scores = [float(s) for s in state["collected_scores"]]
            self._summaries = [np.asarray(s, dtype=np.float64) for s in state["collected_summaries"]]
            self._check_state()
        # OverflowError: JSON reads Infinity and integers of any length, which int() and float() refuse
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"drift state does not fit: {exc}") from None
        return self

    def _check_state(self) -> None:
        """ValueError when restored numbers would break :meth:`observe` or the reports: JSON
        readers take NaN and Infinity, and a summary of another length cannot be averaged."""
        reference = self.reference
        if reference is not None and len(self._live_bins) != len(reference.proportions):
            raise ValueError("live bins do not match the reference")
        if (reference is None) != (self.state == "collecting"):
            # Watching without a reference would never alarm; only collecting comes before one.
            raise ValueError(
                f"a detector {self.state} {'without' if reference is None else 'with'} a reference"
            )
        numbers = [self._live_bins, np.array(self._scores), np.array([self.score_shift])]
        if self.embedding_shift is not None:
            numbers.append(np.array([self.embedding_shift]))
        dims = {len(s) for s in self._summaries}
        if self._live_mean is not None:
            numbers.append(self._live_mean)
            dims.add(len(self._live_mean))
        if reference is not None and reference.mean is not None:
            dims.add(len(reference.mean))
            if self._live_mean is None:
                raise ValueError("a reference of embedding summaries without their live mean")
        if not all(np.isfinite(n).all() for n in numbers) or len(dims) > 1:
            raise ValueError("numbers that are not finite, or embedding summaries of several lengths")
        if self.observed < 0 or self.alarms < 0:
            raise ValueError("a negative count")
