"""Human-readable tables of evaluation results (terminal and markdown)."""

from __future__ import annotations

import math

from lmroute.evaluation.evaluator import Evaluation

COLUMNS = ("router", "APGR", "CPT(20%)", "CPT(50%)", "CPT(80%)", "strong % @t", "quality @50%")


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def rows(evaluation: Evaluation) -> list[list[str]]:
    """One row of formatted cells per router."""
    out = []
    for r in evaluation.results:
        apgr = f"{r.apgr:.4f}" + (f" ±{r.apgr_sd:.3f}" if r.seeds > 1 else "")
        out.append([
            r.router + (f" ({r.seeds} seeds)" if r.seeds > 1 else ""),
            apgr, _pct(r.cpt20), _pct(r.cpt50), _pct(r.cpt80),
            _pct(r.strong_share_at_threshold) + f" @{r.threshold:g}",
            f"{r.quality_at_50:.4g}",
        ])  # fmt: skip
    return out


def header(evaluation: Evaluation) -> str:
    e = evaluation
    return (
        f"{e.benchmark}: {e.n_prompts} prompts, protocol {e.protocol}; "
        f"strong {e.strong_model} = {e.strong_quality:.4g}, weak {e.weak_model} = "
        f"{e.weak_quality:.4g}"
    )


def format_table(evaluation: Evaluation) -> str:
    """A fixed-width table for the terminal."""
    body = [list(COLUMNS), *rows(evaluation)]
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    lines = [header(evaluation)]
    for k, row in enumerate(body):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(evaluation: Evaluation) -> str:
    """The same table in markdown."""
    lines = [f"**{header(evaluation)}**", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in rows(evaluation)]
    return "\n".join(lines)
