"""Call–performance plots (matplotlib, imported only when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path

from lmroute.evaluation.evaluator import Evaluation


def plot_curves(evaluation: Evaluation, path: str | Path) -> Path:
    """Draw every router's curve with the strong and weak lines and write a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from lmroute._extras import missing

        raise missing("matplotlib", purpose="plots") from None

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
