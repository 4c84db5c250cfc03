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


#: APGR the RouteLLM paper published for its routers (Ong et al., 2024), for comparison.
PAPER_APGR = {
    "best published router": {"mmlu": 0.603, "gsm8k": 0.622, "mt-bench": 0.802},
    "bert (paper)": {"mmlu": 0.572, "gsm8k": 0.531, "mt-bench": 0.751},
    "causal_llm (paper)": {"mmlu": 0.600, "gsm8k": 0.622, "mt-bench": 0.679},
}


#: Protocols with tables of their own; every other protocol's cells are one per benchmark.
_OWN_TABLES = ("leave-one-source-out", "single-source", "conversations")


def experiment_markdown(result) -> str:
    """The results tables of an experiment: per benchmark protocol APGR (with bootstrap 95%
    intervals), CPT(50%), CPT(80%); per source protocol the tables of :func:`sources_markdown` and
    :func:`matrix_markdown` (``result.to_dict()`` holds their data)."""
    lines = []
    data = None
    for protocol in result.config.protocols:
        if protocol == "leave-one-source-out":
            data = data or result.to_dict()
            lines += [f"### Protocol `{protocol}`", "", sources_markdown(data["leave_one_source_out"]), ""]
        elif protocol == "single-source":
            data = data or result.to_dict()
            lines += [f"### Protocol `{protocol}`", "", matrix_markdown(data["single_source"]), ""]
        elif protocol == "conversations":
            data = data or result.to_dict()
            lines += [f"### Protocol `{protocol}`", "", conversations_markdown(data["conversations"]), ""]
        else:
            lines += _benchmark_markdown(result, protocol)
    return "\n".join(lines)


def sources_markdown(summary: dict) -> str:
    """Leave-one-source-out APGR: a row per router, a column per held-out source, mean and worst."""
    sources = summary["sources"]
    head = ["router", *(s["source"] for s in sources), "mean", "worst"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for router, total in summary["summary"].items():
        row = [router]
        row += [_entry_text(s["routers"].get(router)) for s in sources]
        row += [f"**{total['mean']:.4f}**", f"{total['worst']:.3f} ({total['worst_source']})"]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "Evaluated pairs: "
        + "; ".join(
            f"{s['source']} {s['strong_model']} vs {s['weak_model']} ({s['items']:,} items)" for s in sources
        )
    )
    return "\n".join(lines)


def matrix_markdown(matrix: dict) -> str:
    """Single-source APGR: per router, a row per training source and a column per evaluation set."""
    # The columns: every set evaluated, by a baseline or a router (without baselines the table had
    # none), in the baselines' order (the held-out sources'), else in the routers' training order.
    evaluated = [t for rows in matrix["apgr"].values() for values in rows.values() for t in values]
    order = [
        *(t for r in matrix["baselines"].values() for t in r),
        *(source for rows in matrix["apgr"].values() for source in rows),
        *evaluated,
    ]
    wanted = {*evaluated, *(t for r in matrix["baselines"].values() for t in r)}
    targets = [t for t in dict.fromkeys(order) if t in wanted]
    lines = []
    for router, rows_ in matrix["apgr"].items():
        head = [f"{router}: trained on ↓, evaluated on →", *targets]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for source, values in rows_.items():
            lines.append(
                "| "
                + " | ".join([source, *(f"{values[t]:.3f}" if t in values else "—" for t in targets)])
                + " |"
            )
        for name, values in matrix["baselines"].items():
            lines.append(
                "| "
                + " | ".join([f"*{name}*", *(f"*{values.get(t, float('nan')):.3f}*" for t in targets)])
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def conversations_markdown(table: dict) -> str:
    """MT-Bench second-turn APGR: a row per router, a column per ``route_on`` setting."""
    settings = list(dict.fromkeys(k for row in table["apgr"].values() for k in row))
    head = ["router", *(f"`{s}`" for s in settings)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for router, row in table["apgr"].items():
        cells = [_entry_text(row.get(setting)) for setting in settings]
        lines.append("| " + " | ".join([router, *cells]) + " |")
    chars = table["system_prompt_chars"]
    lines += [
        "",
        f"Every conversation opened by a shared system prompt of {chars:,} characters."
        if chars
        else "No system prompt.",
    ]
    return "\n".join(lines)


def _entry_text(entry: dict | None) -> str:
    """``APGR [interval] ±sd`` of one ``{"apgr", "apgr_ci95", "apgr_sd"?}`` entry ("" for none)."""
    if entry is None:
        return ""
    ci, sd = entry.get("apgr_ci95"), entry.get("apgr_sd")
    return (
        f"{entry['apgr']:.3f}"
        + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        + (f" ±{sd:.3f} sd" if sd else "")
    )


def _benchmark_markdown(result, protocol: str) -> list[str]:
    # By the names the cells carry (a custom file's stem), not as the config spells them (its path).
    benchmarks = list(dict.fromkeys(c.benchmark for c in result.cells if c.protocol not in _OWN_TABLES))
    lines: list[str] = []
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
    return lines
