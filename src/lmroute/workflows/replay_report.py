"""What a replay shows: per window, the usage the controller realized against the static
threshold's on the same traffic, the thresholds, drift alarms and quality; over the whole replay,
the controller's quality against a static threshold at the same realized share.

The *static* threshold is the one calibrated on the calibration sample for the same target (for
a share, the score quantile; for a spend, the threshold whose spend on the sample is the target),
as ``lmroute calibrate`` would give. Quality is compared, over the prompts whose outcomes are
known, with the static threshold that realizes the controller's own usage over the whole replay:
the difference of mean quality with a paired bootstrap interval over those prompts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmroute.control.knobs import ThresholdKnob
from lmroute.routing_names import THRESHOLD
from lmroute.workflows.replay import ReplayRun
from lmroute.workflows.replay_mix import Traffic

#: Requests per reporting window, and bootstrap resamples.
WINDOW = 500
BOOTSTRAP = 1000


def static_threshold(calibration_rows: np.ndarray, target: float) -> float:
    """The fixed threshold whose usage on the calibration rows is nearest ``target``."""
    return ThresholdKnob().setting_for(np.asarray(calibration_rows, dtype=np.float64), target)


def routed_usage(rows: np.ndarray, threshold: float) -> np.ndarray:
    """Each row's usage when routed with a fixed ``threshold``."""
    return np.where(rows[:, 0] >= threshold, rows[:, 2], rows[:, 1])


def routed_quality(quality: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Each prompt's quality for the model it went to (NaN where the outcome is unknown)."""
    return np.where(np.asarray(strong, dtype=bool), quality[:, 0], quality[:, 1])


def paired_bootstrap(
    difference: np.ndarray, *, resamples: int = BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """The 95% percentile interval of the mean of ``difference`` over bootstrap resamples."""
    rng = np.random.default_rng(seed)
    n = len(difference)
    means = difference[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def report(
    run: ReplayRun,
    traffic: Traffic,
    *,
    calibration_rows: np.ndarray | None,
    window: int = WINDOW,
    seed: int = 0,
) -> dict[str, Any]:
    """The replay's report (JSON-ready): see the module docstring. A fixed threshold
    (``router-mf-0.55``) has no target: its shares are reported without a target, a deviation or a
    static threshold, which would be the same threshold."""
    held = run.spec.mode != THRESHOLD
    target = run.spec.value if held else None
    static = (
        static_threshold(calibration_rows, run.spec.value) if held and calibration_rows is not None else None
    )
    static_usage = routed_usage(run.rows, static) if static is not None else None
    windows = []
    for start in range(0, len(run.scores), window):
        stop = min(start + window, len(run.scores))
        part = slice(start, stop)
        row: dict[str, Any] = {
            "start": start,
            "stop": stop,
            "pools": sorted(set(traffic.pools[part])),
            "realized": float(run.usage[part].mean()),
            "static": None if static_usage is None else float(static_usage[part].mean()),
            "threshold_mean": float(run.thresholds[part].mean()),
            "threshold_last": float(run.thresholds[stop - 1]),
            "alarms": [a for a in run.alarms if start <= a < stop],
        }
        windows.append(row)
    later = windows[1:]
    summary: dict[str, Any] = {
        "model": run.spec.model,
        "mode": run.spec.mode,
        "target": target,
        "n": len(run.scores),
        "window": window,
        "shifts": traffic.shifts,
        "static_threshold": static,
        "realized": float(run.usage.mean()),
        "max_deviation": None if target is None else _max_deviation(later, "realized", target),
        "static_max_deviation": (
            None if static is None or target is None else _max_deviation(later, "static", target)
        ),
        "alarms": [{"at": a, "after_shift": _after_shift(a, traffic.shifts)} for a in run.alarms],
        "windows": windows,
        "quality": _quality(run, traffic, seed=seed),
    }
    return summary


def _max_deviation(windows: list[dict[str, Any]], key: str, target: float) -> float | None:
    values = [abs(w[key] - target) for w in windows if w[key] is not None]
    return max(values) if values else None


def _after_shift(position: int, shifts: list[int]) -> int | None:
    """Requests since the last shift at or before ``position`` (None before the first shift)."""
    before = [s for s in shifts if s <= position]
    return position - before[-1] if before else None


def _quality(run: ReplayRun, traffic: Traffic, *, seed: int) -> dict[str, Any] | None:
    """The controller's quality against the static threshold at the controller's realized usage."""
    known = np.isfinite(traffic.quality).all(axis=1)
    if not known.any():
        return None
    equal = static_threshold(run.rows, float(run.usage.mean()))
    static_strong = run.rows[:, 0] >= equal
    controller_q = routed_quality(traffic.quality, run.strong)[known]
    static_q = routed_quality(traffic.quality, static_strong)[known]
    low, high = paired_bootstrap(controller_q - static_q, seed=seed)
    by_pool = {}
    pools = np.asarray(traffic.pools)
    for pool in sorted(set(pools[known])):
        mask = pools[known] == pool
        by_pool[pool] = {
            "n": int(mask.sum()),
            "controller": float(controller_q[mask].mean()),
            "static": float(static_q[mask].mean()),
            "controller_strong": float(run.strong[known][mask].mean()),
            "static_strong": float(static_strong[known][mask].mean()),
        }
    return {
        "n": int(known.sum()),
        "static_threshold": equal,
        "static_realized": float(routed_usage(run.rows, equal).mean()),
        "controller": float(controller_q.mean()),
        "static": float(static_q.mean()),
        "difference": float((controller_q - static_q).mean()),
        "interval": [low, high],
        "no_worse": high >= 0.0,
        "by_pool": by_pool,
    }


def format_report(summary: dict[str, Any]) -> str:
    """The report as a table, one line per window, and the quality comparison."""
    share = summary["mode"] != "spend"  # a fixed threshold's usage is its strong share too
    unit = (lambda v: f"{100 * v:5.1f}%") if share else (lambda v: f"${v:7.3f}")
    static = summary["static_threshold"]
    shifts = f"shifts at {', '.join(map(str, summary['shifts'])) or 'none'}"
    if summary["target"] is None:
        head = f"{summary['model']}: {summary['n']:,} requests, a fixed threshold, {shifts}"
    else:
        head = (
            f"{summary['model']}: {summary['n']:,} requests, target {unit(summary['target'])}, {shifts}; "
            f"static threshold {'none (no calibration sample)' if static is None else f'{static:.4f}'}"
        )
    lines = [head, f"{'requests':>13}  {'controller':>10}  {'static':>8}  {'threshold':>9}  alarms  pools"]
    for w in summary["windows"]:
        s = "n/a" if w["static"] is None else unit(w["static"])
        alarms = ",".join(map(str, w["alarms"])) or "-"
        lines.append(
            f"{w['start']:>6}-{w['stop']:<6}  {unit(w['realized']):>10}  {s:>8}  "
            f"{w['threshold_mean']:>9.4f}  {alarms:<6}  {'+'.join(w['pools'])}"
        )
    deviation = (lambda v: f"{100 * v:.1f}") if share else (lambda v: f"${v:.3f}")
    static_dev = summary["static_max_deviation"]
    if summary["target"] is not None:  # a fixed threshold holds none to deviate from
        if summary["max_deviation"] is None:
            lines.append("one window only: no deviation after the first window to report")
        else:
            lines.append(
                "largest deviation from target after the first window: controller "
                + deviation(summary["max_deviation"])
                + ("" if static_dev is None else f", static {deviation(static_dev)}")
                + (" points" if share else " per 1,000 requests")
            )
    if summary["alarms"]:
        lines.append(
            "drift alarms: "
            + ", ".join(
                f"{a['at']} ({a['after_shift']} after a shift)"
                if a["after_shift"] is not None
                else str(a["at"])
                for a in summary["alarms"]
            )
        )
    q = summary["quality"]
    if q is not None:
        lines.append(
            f"quality on {q['n']:,} prompts with known outcomes: controller {q['controller']:.4f}, "
            f"static threshold {q['static_threshold']:.4f} at the same realized usage "
            f"({unit(q['static_realized']).strip()}) "
            f"{q['static']:.4f}; difference {q['difference']:+.4f} [95% CI {q['interval'][0]:+.4f}, "
            f"{q['interval'][1]:+.4f}]"
        )
    return "\n".join(lines)
