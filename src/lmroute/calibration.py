"""Threshold calibration: the threshold that sends a chosen share of prompts to the strong model.

A router's scores are only comparable with its own thresholds, and how many prompts clear a
threshold depends on the traffic. So a threshold is chosen on a sample of prompts: the one at
which the share of prompts with ``score >= threshold`` is closest to the target. The best sample
is one's own traffic; without one, the 500 Arena-Hard prompts (real, hard user prompts from
Chatbot Arena, Apache-2.0) are a public stand-in.

:func:`threshold_for_strong_share` and :func:`strong_share` are pure; :func:`calibrate` scores
prompts with a router; :func:`arena_hard_prompts` finds the public sample (data folder, cache or download);
:func:`calibration_prompts` takes one's own prompts from a file, else that sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lmroute._jsonl import read_jsonl
from lmroute.exceptions import ConfigError, DataError
from lmroute.routers.base import Router
from lmroute.routing_names import format_model_name

#: How :func:`format_calibration` names the public sample.
ARENA_HARD_SAMPLE = "the public Arena-Hard v0.1 sample"
#: Strong shares whose thresholds are tabulated when no thresholds are asked for.
DEFAULT_SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def strong_share(
    scores: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray
) -> np.ndarray:
    """For each threshold, the share of ``scores`` at or above it (the prompts sent to the strong model)."""
    s = _scores(scores)
    t = np.asarray(thresholds, dtype=np.float64)
    ordered = np.sort(s)
    return (len(s) - np.searchsorted(ordered, t, side="left")) / len(s)


def threshold_for_strong_share(scores: Sequence[float] | np.ndarray, share: float) -> float:
    """The threshold whose strong share on ``scores`` is closest to ``share`` (in [0, 1]).

    Among the cuts between distinct scores, the one whose share is nearest the target is taken
    (the smaller share on a tie); the threshold is the shortest decimal in the gap at that cut,
    near its middle. ``share`` 0 gives a threshold above every score (unless a score is 1),
    ``share`` 1 one at or below every score.
    """
    if isinstance(share, bool) or not isinstance(share, (int, float, np.floating)) or not 0.0 <= share <= 1.0:
        raise ConfigError(f"strong share must be a fraction in [0, 1] (0.5 for 50%), got {share!r}")
    s = _scores(scores)
    distinct = np.unique(s)[::-1]  # d[0] > d[1] > ...
    # Cut j sends the scores >= d[j-1] to the strong model; cut 0 sends none.
    shares = np.concatenate([[0.0], (len(s) - np.searchsorted(np.sort(s), distinct, side="left")) / len(s)])
    # Shares grow with j, so argmin's first minimum is the smaller share on a tie.
    j = int(np.argmin(np.round(np.abs(shares - share), 12)))
    if j == 0:
        # Above the top score; a score of exactly 1 cannot be excluded.
        return _short_between(float(distinct[0]), 1.0) if distinct[0] < 1.0 else 1.0
    if j == len(distinct):
        return _short_between(0.0, float(distinct[-1])) if distinct[-1] > 0.0 else 0.0
    return _short_between(float(distinct[j]), float(distinct[j - 1]))


def _short_between(lower: float, upper: float) -> float:
    """The decimal with the fewest digits in ``(lower, upper]``, near the middle: every threshold
    in the gap splits the sample alike, and a short one reads well in a model name."""
    middle = (lower + upper) / 2
    for digits in range(1, 18):
        threshold = round(middle, digits)
        if lower < threshold <= upper:
            return threshold
    return upper


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold and the trade-off table on the same prompts."""

    router: str
    target_share: float
    threshold: float
    #: The strong share the threshold gives on the calibration prompts.
    achieved_share: float
    n_prompts: int
    #: (threshold, strong share) rows, by increasing threshold.
    table: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, object]:
        """The fields, the model string that selects router and threshold (written positionally, as
        the model-name grammar needs: a threshold such as 5e-05 in an f-string would not parse)
        and the table as rows."""
        return {
            **asdict(self),
            "model": format_model_name(self.router, self.threshold),
            "table": [{"threshold": t, "strong_share": s} for t, s in self.table],
        }


def calibrate(
    router: Router,
    prompts: Sequence[str],
    share: float,
    *,
    thresholds: Sequence[float] | None = None,
    name: str | None = None,
) -> Calibration:
    """Score ``prompts`` and find the threshold for ``share``, with the share at each of
    ``thresholds`` (default: the thresholds for 10%, 20%, ... 90%)."""
    scores = router.score(prompts)
    return calibrate_scores(scores, share, thresholds=thresholds, router=name or router.name)


def calibrate_scores(
    scores: Sequence[float] | np.ndarray,
    share: float,
    *,
    thresholds: Sequence[float] | None = None,
    router: str = "router",
) -> Calibration:
    """:func:`calibrate` for scores already computed."""
    s = _scores(scores)
    threshold = threshold_for_strong_share(s, share)
    if thresholds is None:
        thresholds = [threshold_for_strong_share(s, p) for p in DEFAULT_SHARES]
    rows = sorted(set(_thresholds(thresholds)))
    table = tuple(zip(rows, strong_share(s, rows).tolist(), strict=True))
    achieved = float(strong_share(s, [threshold])[0])
    return Calibration(router, float(share), threshold, achieved, len(s), table)


def format_calibration(result: Calibration, *, source: str) -> str:
    """The calibration as text: the threshold, the model string to use, and the trade-off table."""
    threshold = result.threshold
    # Thresholds in full: scores may lie closer than a rounded threshold's last digit, and a
    # rounded one would then split the prompts otherwise than the share printed beside it.
    lines = [
        f"router {result.router} on {result.n_prompts} prompts ({source})",
        f"threshold for {result.target_share:.1%} strong: {_full(threshold)} "
        f"(sends {result.achieved_share:.1%} of these prompts to the strong model)",
        f"model: {format_model_name(result.router, threshold)}",
        "",
        f"{'threshold':>10}  strong share",
        *(f"{_full(t):>10}  {s:>11.1%}" for t, s in result.table),
        "",
        "Shares depend on the traffic: calibrating on a sample of your own prompts is best "
        "(--prompts FILE: JSONL with a 'prompt' field, CSV with a 'prompt' column, or one prompt per line).",
    ]
    return "\n".join(lines)


def _full(threshold: float) -> str:
    """The shortest decimal that reads back as ``threshold``, without an exponent."""
    return np.format_float_positional(threshold, trim="-")


def arena_hard_prompts(*, data_dir: str | Path | None = None, url: str | None = None) -> list[str]:
    """The 500 Arena-Hard v0.1 prompts: ``arena-hard/questions.jsonl`` of the data folder, found
    by :func:`lmroute.data.public.locate` (``data_dir``, ``$LMROUTE_DATA_DIR``, the user cache,
    else downloaded once from ``url`` or ``$LMROUTE_PROMPTS_URL`` or arena-hard-auto on GitHub).
    Records with a ``prompt`` field or the first of their ``turns`` (both layouts the repository
    has used) are read."""
    from lmroute.data.public import locate, reading

    folder = locate("arena-hard", data_dir=data_dir, download_url=url)
    with reading(folder):
        return read_arena_hard(folder / "questions.jsonl")


def calibration_prompts(
    path: str | Path | None = None, *, data_dir: str | Path | None = None, url: str | None = None
) -> tuple[list[str], str]:
    """Prompts to calibrate on and a description of where they came from, for
    :func:`format_calibration`: those in ``path`` (JSONL with a ``prompt`` field, CSV with a
    ``prompt`` column, or one per line) or, without a path, the public Arena-Hard sample
    (:func:`arena_hard_prompts`)."""
    if path:
        from lmroute.data.prompts import read_prompts

        return read_prompts(path), str(path)
    return arena_hard_prompts(data_dir=data_dir, url=url), ARENA_HARD_SAMPLE


def read_arena_hard(path: str | Path) -> list[str]:
    """Prompts of an Arena-Hard question file."""
    prompts = []
    for n, value in read_jsonl(path, what="prompts"):
        record = value if isinstance(value, dict) else {}
        prompt, turns = record.get("prompt"), record.get("turns")
        if prompt is None and isinstance(turns, list) and turns and isinstance(turns[0], dict):
            prompt = turns[0].get("content")
        if not isinstance(prompt, str):
            raise DataError(f"{path}:{n}: no 'prompt' or 'turns[0].content' text")
        prompts.append(prompt)
    return prompts


def _thresholds(thresholds: Sequence[float]) -> list[float]:
    """``thresholds`` as floats, each a number in [0, 1]; ConfigError for anything else (a string,
    None, a nested list), which numpy would refuse with a raw TypeError or ValueError."""
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Iterable):
        raise ConfigError(f"thresholds must be a list of numbers in [0, 1], got {thresholds!r}")
    checked = []
    for t in thresholds:
        number = isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, bool)
        if not number or not 0.0 <= t <= 1.0:
            raise ConfigError(f"thresholds must be numbers in [0, 1], got {t!r}")
        checked.append(float(t))
    return checked


def _scores(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):  # "a", None, a dict...
        raise DataError("scores must be finite numbers") from None
    if s.ndim != 1 or len(s) == 0:
        raise DataError("calibration needs a non-empty list of scores")
    if not np.isfinite(s).all():
        raise DataError("scores must be finite numbers")
    return s
