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
        out.append(
            [
                r.router + (f" ({r.seeds} seeds)" if r.seeds > 1 else ""),
                apgr,
                _pct(r.cpt20),
                _pct(r.cpt50),
                _pct(r.cpt80),
                _pct(r.strong_share_at_threshold)
                + f" @{r.threshold:g}"
                + (f", cost {r.cost_at_threshold:.4g}" if r.cost_at_threshold is not None else ""),
                f"{r.quality_at_50:.4g}",
            ]
        )
    return out


def header(evaluation: Evaluation) -> str:
    e = evaluation
    return (
        f"{e.benchmark}: {e.n_prompts} prompts, protocol {e.protocol}; "
        f"strong {e.strong_model} = {e.strong_quality:.4g}, weak {e.weak_model} = "
        f"{e.weak_quality:.4g}"
    ) + (
        f"; mean cost per item: strong {e.strong_cost:.4g}, weak {e.weak_cost:.4g}"
        if e.strong_cost is not None and e.weak_cost is not None
        else ""
    )


def format_table(evaluation: Evaluation) -> str:
    """A fixed-width table for the terminal."""
    body = [list(COLUMNS), *rows(evaluation)]
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    lines = [header(evaluation), *(f"warning: {w}" for w in evaluation.warnings)]
    for k, row in enumerate(body):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(evaluation: Evaluation) -> str:
    """The same table in markdown."""
    lines = [f"**{header(evaluation)}**", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(evaluation)]
    return "\n".join(lines)


#: APGR the RouteLLM paper published for its routers (Ong et al., 2024), for comparison.
PAPER_APGR = {
    "best published router": {"mmlu": 0.603, "gsm8k": 0.622, "mt-bench": 0.802},
    "bert (paper)": {"mmlu": 0.572, "gsm8k": 0.531, "mt-bench": 0.751},
    "causal_llm (paper)": {"mmlu": 0.600, "gsm8k": 0.622, "mt-bench": 0.679},
}


def experiment_markdown(result) -> str:
    """The results tables of an experiment: APGR (with bootstrap 95% intervals), CPT(50%), CPT(80%)."""
    # By the names the cells carry (a custom file's stem), not as the config spells them (its path).
    benchmarks = list(dict.fromkeys(c.benchmark for c in result.cells))
    lines = []
    for protocol in result.config.protocols:
        cells = [c for c in result.cells if c.protocol == protocol]
        routers = list(dict.fromkeys(c.result.router for c in cells))
        lines += [f"### Protocol `{protocol}`", ""]
        head = ["router"] + [f"{b} APGR [95% CI]" for b in benchmarks]
        head += [f"{b} CPT(50%)" for b in benchmarks] + [f"{b} CPT(80%)" for b in benchmarks]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name in routers:
            by_bench = {c.benchmark: c for c in cells if c.result.router == name}
            row = [name]
            for b in benchmarks:
                c = by_bench.get(b)
                if c is None:
                    row.append("")
                    continue
                ci = f" [{c.apgr_ci[0]:.3f}, {c.apgr_ci[1]:.3f}]" if c.apgr_ci else ""
                sd = f" ±{c.result.apgr_sd:.3f} sd" if c.result.seeds > 1 else ""
                row.append(f"{c.result.apgr:.4f}{ci}{sd}")
            for key in ("cpt50", "cpt80"):
                row += [_pct(getattr(by_bench[b].result, key)) if b in by_bench else "" for b in benchmarks]
            lines.append("| " + " | ".join(row) + " |")
        for name, values in PAPER_APGR.items():
            row = [f"*{name}*"] + [f"*{values[b]:.3f}*" if b in values else "" for b in benchmarks]
            lines.append("| " + " | ".join(row + [""] * (2 * len(benchmarks))) + " |")
        lines.append("")
    return "\n".join(lines)
