"""Call–performance and cost–quality plots and replay figures (matplotlib, imported only when a plot is
drawn)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmroute._files import atomic_writer, write_failures
from lmroute.evaluation.evaluator import Evaluation
from lmroute.evaluation.routing import CostQualityEvaluation
from lmroute.exceptions import ConfigError

if TYPE_CHECKING:
    from lmroute.evaluation.correlation import Correlation


def plot_curves(evaluation: Evaluation, path: str | Path) -> Path:
    """Draw every router's curve with the strong and weak lines and write a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    for r in evaluation.results:
        xs = [100 * p["strong_share"] for p in r.points]
        ys = [p["quality"] for p in r.points]
        oracle = r.router == "oracle"
        ax.plot(
            xs,
            ys,
            marker=None if len(xs) > 40 else ".",
            linestyle=":" if oracle else "-",
            color="black" if oracle else None,
            label=f"{r.router} (APGR {r.apgr:.3f})",
        )
    ax.axhline(
        evaluation.strong_quality, color="red", linestyle="--", label=f"strong: {evaluation.strong_model}"
    )
    ax.axhline(evaluation.weak_quality, color="grey", linestyle="--", label=f"weak: {evaluation.weak_model}")
    ax.set_xlabel("Strong model calls (%)")
    unit = "accuracy (%)" if evaluation.benchmark in ("mmlu", "gsm8k") else "quality"
    ax.set_ylabel(f"Performance: {unit}")
    ax.set_title(
        f"Call–performance curves on {evaluation.benchmark} ({evaluation.n_prompts} prompts, "
        f"{evaluation.protocol} protocol)"
    )
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_cost_quality(evaluation: CostQualityEvaluation, path: str | Path) -> Path:
    """Cost (log axis; linear near 0 when a cost is 0) against quality: every single model, their
    hull (the mixing baseline), each router's points and hull, and the oracle's; a PNG."""
    plt = _pyplot()
    ev = evaluation
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    ax.scatter(ev.model_cost, ev.model_quality, color="grey", s=14, zorder=3, label="single models")
    best, cheap = ev.best, ev.cheapest
    for i in {best, cheap}:
        ax.annotate(
            ev.models[i],
            (ev.model_cost[i], ev.model_quality[i]),
            fontsize=7,
            xytext=(4, -10),
            textcoords="offset points",
        )
    ax.plot(
        ev.baseline.hull_cost,
        ev.baseline.hull_quality,
        color="grey",
        linestyle="--",
        label=f"mixing baseline (AIQ {ev.baseline.aiq:.3f})",
    )
    for curve in ev.curves:
        oracle = curve.label == "oracle"
        line = ax.plot(
            curve.hull_cost,
            curve.hull_quality,
            linestyle=":" if oracle else "-",
            color="black" if oracle else None,
            label=f"{curve.label} (AIQ {curve.aiq:.3f})",
        )
        if not oracle:
            ax.scatter(curve.cost, curve.quality, s=4, color=line[0].get_color(), alpha=0.4)
    costs = np.concatenate([ev.model_cost, *(c.cost for c in ev.curves), *(c.hull_cost for c in ev.curves)])
    positive = costs[costs > 0]
    if positive.size == costs.size:
        ax.set_xscale("log")
        ax.set_xlabel("Cost: USD per 1,000 requests (log scale)")
    else:
        # A free model (a cost of 0) has no place on a log axis: it, and the hull and router points
        # at its cost, would vanish from the plot without a word.
        linear = float(positive.min()) if positive.size else 1.0
        ax.set_xscale("symlog", linthresh=linear)
        ax.set_xlabel(f"Cost: USD per 1,000 requests (log scale, linear below {linear:.3g})")
    ax.set_ylabel("Quality (mean score)")
    ax.set_title(f"Cost–quality on {ev.benchmark} ({ev.n_prompts} prompts, {len(ev.models)} models)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_replay(summary: dict[str, Any], thresholds: np.ndarray, path: str | Path) -> Path:
    """A replay's figure (``lmroute replay --plot``): per window, the controller's and the static
    threshold's realized share (or spend) against the target with a ±3-point band, shifts and
    drift alarms marked; below, the threshold request by request against the static one."""
    plt = _pyplot()
    share = summary["mode"] != "spend"  # a fixed threshold's usage is its strong share too
    scale = 100.0 if share else 1.0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), dpi=120, sharex=True, height_ratios=[3, 2])
    middles = [(w["start"] + w["stop"]) / 2 for w in summary["windows"]]
    if summary["target"] is not None:  # None: a fixed threshold, which holds no target
        target = scale * summary["target"]
        if share:
            top.axhspan(target - 3, target + 3, color="green", alpha=0.12, label="target ± 3 points")
        top.axhline(target, color="green", linewidth=1)
    top.plot(middles, [scale * w["realized"] for w in summary["windows"]], "o-", label="online controller")
    if summary["static_threshold"] is not None:
        top.plot(
            middles,
            [scale * w["static"] for w in summary["windows"]],
            "s--",
            color="grey",
            label=f"static threshold {summary['static_threshold']:.4f}",
        )
    for axis in (top, bottom):
        for shift in summary["shifts"]:
            axis.axvline(shift, color="black", linestyle=":", linewidth=1)
        for alarm in summary["alarms"]:
            axis.axvline(alarm["at"], color="red", linewidth=1, alpha=0.6)
    top.set_ylabel("strong calls (%)" if share else "spend ($ per 1,000 requests)")
    top.set_title(
        f"{summary['model']}: {summary['window']}-request windows (dotted: traffic shifts, red: drift alarms)"
    )
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="best")
    bottom.plot(np.arange(len(thresholds)), thresholds, linewidth=0.8, label="controller threshold")
    if summary["static_threshold"] is not None:
        bottom.axhline(summary["static_threshold"], color="grey", linestyle="--", label="static threshold")
    bottom.set_xlabel("request")
    bottom.set_ylabel("threshold")
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_similarity_vs_apgr(
    labels: Sequence[str],
    similarity: Sequence[float],
    apgr: Sequence[float],
    correlation: Correlation,
    path: str | Path,
    *,
    router: str = "router",
) -> Path:
    """A scatter of each left-out source's similarity score against the router's APGR on it,
    labelled by source, with the correlation in the title; written as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    ax.scatter(similarity, apgr, color="tab:blue")
    for label, x, y in zip(labels, similarity, apgr, strict=True):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(0.5, color="grey", linestyle="--", label="random (APGR 0.5)")
    ax.set_xlabel("similarity score of the left-out source to the training data")
    ax.set_ylabel(f"APGR of {router} on the left-out source")
    kind = "exact" if correlation.exact else f"{correlation.permutations:,} permutations"
    ax.set_title(
        f"Similarity vs APGR over {correlation.n} left-out sources\nPearson r {correlation.pearson:+.2f}, "
        f"Spearman ρ {correlation.spearman:+.2f} (p = {correlation.p_value:.2g}, {kind})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, path)


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or the one-line error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from lmroute._extras import missing

        raise missing("matplotlib", purpose="plots") from None
    return plt


def plot_file(path: str | Path) -> Path:
    """The file a plot asked for at ``path`` is written to: ``path`` with ``.png`` added when it has
    no suffix (matplotlib adds it without a word); a ConfigError when matplotlib cannot write its
    format. Commands call it before their work, so that a wrong name does not waste the work."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    if not path.suffix:
        return path.with_name(path.name + ".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise ConfigError(
            f"cannot draw a plot to {path}: matplotlib does not write {path.suffix} files; give a name "
            f"ending in .png (or {', '.join('.' + f for f in sorted(formats) if f != 'png')})"
        )
    return path


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    path = plot_file(path)
    try:
        # Atomically, as every other output: a write that fails part-way (a full disk) left a
        # broken file in place of the plot of an earlier run.
        with atomic_writer(path) as f, write_failures(path):
            fig.savefig(f, format=path.suffix[1:].lower())
    finally:
        plt.close(fig)
    return path
