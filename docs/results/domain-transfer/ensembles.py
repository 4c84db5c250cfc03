"""Combinations of routers on the held-out sources of a run of ``run.py``, without retraining.

    python docs/results/domain-transfer/ensembles.py experiments/domain-transfer.yaml \
        docs/results/domain-transfer ../shared/data "mf (head_tail)" length

Each router's scores on a source are turned into ranks within the source (label-free: no outcome
is read) and averaged with weight ``w`` on the first router. ``w = 0.5`` is fixed in advance.
``w`` chosen on the training sources: for each held-out source S, the ``w`` of the grid whose mean
APGR over the OTHER sources is highest (the held-out source's outcomes are never read for it; the
other sources' scores come from routers that were trained with S, so it is a nested choice over
sources, not over the same data). Prints per source APGR with a 95% bootstrap interval, the mean
and the worst source; writes ``ensembles.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lmroute.evaluation.evaluator import evaluate_scores
from lmroute.workflows.experiment import load_experiment_config
from lmroute.workflows.results import bootstrap_apgr_ci
from lmroute.workflows.transfer import load_held_out

GRID = np.round(np.linspace(0, 1, 11), 2)


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks in (0, 1], ties sharing their mean rank (numpy only)."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(1, len(x) + 1)
    _, group = np.unique(x, return_inverse=True)
    return (np.bincount(group, ranks) / np.bincount(group))[group] / len(x)


def main(config_path: str, out: str, data_dir: str, first: str, second: str, *more: str) -> None:
    config = load_experiment_config(config_path)
    saved = np.load(Path(out) / "scores.npz")
    plain = [h for h in config.held_out if not h.shots and f"{h.name}|{first}" in saved]
    benches = {h.name: load_held_out(h, data_dir=data_dir) for h in plain}
    ranks = {h.name: (_rank(saved[f"{h.name}|{first}"]), _rank(saved[f"{h.name}|{second}"])) for h in plain}

    def apgr(name: str, w: float, ci: bool = False):
        a, b = ranks[name]
        s = w * a + (1 - w) * b
        res = evaluate_scores("x", [s], benches[name], protocol=config.eval_protocol).apgr
        if not ci:
            return res
        low_high = bootstrap_apgr_ci(s, benches[name], protocol=config.eval_protocol, samples=1000, seed=0)
        return res, low_high

    table = {name: {float(w): apgr(name, w) for w in GRID} for name in benches}
    rows: dict[str, dict[str, object]] = {}
    chosen = {}
    for name in benches:
        others = [n for n in benches if n != name]
        chosen[name] = float(max(GRID, key=lambda w: np.mean([table[o][float(w)] for o in others])))
    for label, weight in (
        (first, lambda n: 1.0),
        (second, lambda n: 0.0),
        ("rank mean, w = 0.5", lambda n: 0.5),
        ("rank mean, w chosen on the other sources", lambda n: chosen[n]),
    ):
        cells = {n: apgr(n, weight(n), ci=True) for n in benches}
        values = [v for v, _ in cells.values()]
        rows[label] = {
            "sources": {n: {"apgr": v, "apgr_ci95": ci, "w": weight(n)} for n, (v, ci) in cells.items()},
            "mean": float(np.mean(values)),
            "worst": float(min(values)),
            "worst_source": min(cells, key=lambda n: cells[n][0]),
        }
        line = " ".join(f"{n} {v:.3f} [{ci[0]:.2f},{ci[1]:.2f}]" for n, (v, ci) in cells.items())
        print(f"{label}: mean {np.mean(values):.4f} worst {min(values):.3f} | {line}")
    if more:  # every router named, equal weights (fixed in advance)
        label = "rank mean of " + " + ".join((first, second, *more))
        cells = {}
        for n in benches:
            s = np.mean([*ranks[n], *(_rank(saved[f"{n}|{r}"]) for r in more)], axis=0)
            value = evaluate_scores("x", [s], benches[n], protocol=config.eval_protocol).apgr
            ci = bootstrap_apgr_ci(s, benches[n], protocol=config.eval_protocol, samples=1000, seed=0)
            cells[n] = (value, ci)
        values = [v for v, _ in cells.values()]
        rows[label] = {
            "sources": {n: {"apgr": v, "apgr_ci95": ci} for n, (v, ci) in cells.items()},
            "mean": float(np.mean(values)),
            "worst": float(min(values)),
            "worst_source": min(cells, key=lambda n: cells[n][0]),
        }
        line = " ".join(f"{n} {v:.3f} [{ci[0]:.2f},{ci[1]:.2f}]" for n, (v, ci) in cells.items())
        print(f"{label}: mean {np.mean(values):.4f} worst {min(values):.3f} | {line}")
    print("w chosen per held-out source:", chosen)
    by_w = {float(w): round(float(np.mean([table[n][float(w)] for n in benches])), 4) for w in GRID}
    print("mean APGR over sources by w:", by_w)
    stem = "-".join((first, second, *more)).replace(" ", "_").replace("(", "").replace(")", "")
    name = f"ensembles-{stem}.json"
    data = {"first": first, "second": second, "grid": table, "chosen": chosen, "rows": rows}
    Path(out, name).write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
