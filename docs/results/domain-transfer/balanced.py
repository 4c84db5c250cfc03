"""Leave-one-source-out with every training source weighing the same in total.

    python docs/results/domain-transfer/balanced.py experiments/domain-transfer.yaml \
        docs/results/domain-transfer-balanced ../shared/data "mf (head_tail)"

The leave-one-source-out mean weighs each domain equally; in training, the sources with most
battles (MMLU's and MMLU-Pro's gold) set the direction a linear router learns. Here each source's
battle weights are rescaled so that every training source has the same total weight (their sum
unchanged), decided before any run; the router (one of the file's, by label) is otherwise trained
and evaluated exactly as in the file (same battles, decontamination, pairs). Writes
``results.json`` (APGR with a 95% bootstrap interval per source, mean, worst) and ``scores.npz``
(the router's and ``length``'s, for ``ensembles.py``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from lmroute.evaluation.evaluator import evaluate_scores
from lmroute.registry import load_router
from lmroute.workflows.experiment import load_experiment_config
from lmroute.workflows.results import bootstrap_apgr_ci, fresh_router
from lmroute.workflows.transfer import _prepare, carries, load_held_out


def _balance(battles: list) -> list:
    """``battles`` with weights rescaled so that every source sums to the same total."""
    totals: dict[str, float] = defaultdict(float)
    for b in battles:
        totals[b.source] += b.weight
    share = sum(totals.values()) / len(totals)
    return [dataclasses.replace(b, weight=b.weight * share / totals[b.source]) for b in battles]


def main(config_path: str, out: str, data_dir: str, label: str) -> None:
    config = load_experiment_config(config_path)
    spec = next(r for r in config.routers if r.title == label)
    Path(out).mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    scores: dict[str, np.ndarray] = {}
    for held in (h for h in config.held_out if not h.shots):
        started = time.perf_counter()
        bench = load_held_out(held, data_dir=data_dir)
        specs = [s for s in config.sources if not carries(s, held)]
        battles, _ = _prepare(config, specs, [bench], data_dir, None)
        router = fresh_router(spec, None).fit(_balance(battles), progress=False)
        s = router.score(list(bench.prompts))
        apgr = evaluate_scores(label, [s], bench, protocol=config.eval_protocol).apgr
        ci = bootstrap_apgr_ci(
            s, bench, protocol=config.eval_protocol, samples=config.bootstrap, seed=config.seed
        )
        rows[held.name] = {"apgr": apgr, "apgr_ci95": ci, "train_battles": len(battles)}
        scores[f"{held.name}|{label} balanced"] = s
        scores[f"{held.name}|length"] = load_router("length").score(list(bench.prompts))  # for ensembles.py
        values = [r["apgr"] for r in rows.values()]
        summary = {"mean": float(np.mean(values)), "worst": float(min(values)), "sources": len(values)}
        data = {"sources": rows, "summary": summary}
        Path(out, "results.json").write_text(json.dumps(data, indent=2) + "\n")
        np.savez_compressed(Path(out) / "scores.npz", **scores)
        took = time.perf_counter() - started
        line = f"APGR {apgr:.4f} [{ci[0]:.3f}, {ci[1]:.3f}] ({took:.0f} s)"
        print(f"[{held.name}] {label} balanced: {line}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
