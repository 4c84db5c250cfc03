"""Call–performance and cost–quality plots (matplotlib, imported only when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path

from lmroute.evaluation.evaluator import Evaluation
from lmroute.evaluation.routing import CostQualityEvaluation


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
    return _save(fig, plt, path)


def plot_cost_quality(evaluation: CostQualityEvaluation, path: str | Path) -> Path:
    """Cost (log axis) against quality: every single model, their hull (the mixing baseline), each
    router's points and hull, and the oracle's; a PNG."""
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
    ax.set_xscale("log")
    ax.set_xlabel("Cost: USD per 1,000 requests (log scale)")
    ax.set_ylabel("Quality (mean score)")
    ax.set_title(f"Cost–quality on {ev.benchmark} ({ev.n_prompts} prompts, {len(ev.models)} models)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, plt, path)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the install
        from lmroute.exceptions import ConfigError

        raise ConfigError("plots need matplotlib: pip install 'lmroute[eval]'") from exc
    return plt


def _save(fig, plt, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
