"""What `lmroute shrink` does for a served router: the shipped mf on MMLU-Pro, which it never saw.

    python docs/results/served-shrinkage/run.py ../shared/data docs/results/served-shrinkage

MMLU-Pro's models that the shipped mf knows (Llama-3.1 8B and 70B Instruct, Mixtral-8x7B Instruct,
Phi-3-mini) are routed as a user would: on five random halves by question, the shipped router's
shrinkage is fitted on one half (written as a benchmark file, through ``shrink_router``, the code of
``lmroute shrink``) and both routers, as shipped and shrunk, route the other half under the lambda
policy (costs from examples/prices.yaml). Writes ``results.json`` and prints one line per split.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from lmroute.catalogue import Catalogue, read_prices
from lmroute.data.custom import read_custom
from lmroute.evaluation.routing import evaluate_choices
from lmroute.registry import load_router
from lmroute.workflows.n_models import grouped_splits, question_groups
from lmroute.workflows.shrink import shrink_router

ROOT = Path(__file__).resolve().parents[3]
SPLITS = 5


def main(data_dir: str, out: str) -> None:
    router = load_router("mf")
    prices = read_prices(ROOT / "examples/prices.yaml")
    table = read_custom(Path(data_dir) / "mmlu-pro/outcomes.jsonl")
    models = [m for m in table.models if m in router.vocabulary and m in prices]
    rows, _ = table.complete(models)
    prompts = list(rows.prompts)
    scores = np.column_stack([rows.scores[m] for m in models])
    costs = Catalogue.from_prices(models, prices, where="examples/prices.yaml").costs(prompts)
    raw = router.predict_quality(prompts, models)
    groups = question_groups(prompts)
    results = []
    for seed in range(SPLITS):
        fit, held = grouped_splits(groups, 2, seed=seed)[0]
        with tempfile.TemporaryDirectory() as tmp:
            half = Path(tmp) / "half.jsonl"
            lines = (
                {"prompt": prompts[i], "scores": dict(zip(models, scores[i].tolist(), strict=True))}
                for i in fit
            )
            half.write_text("".join(json.dumps(line) + "\n" for line in lines))
            shrunk = shrink_router(router, half, models).router
        held_prompts = [prompts[i] for i in held]
        predicted = {"as shipped": raw[held], "shrunk": shrunk.predict_quality(held_prompts, models)}
        ev = evaluate_choices(
            models, scores[held], costs[held], {k: (v, costs[held]) for k, v in predicted.items()}
        )
        row = {"split": seed, "alpha": shrunk.quality_shrinkage.alpha, "hull_aiq": ev.baseline.aiq}
        row |= {curve.label: curve.aiq for curve in ev.curves}
        # what reaching the best model's quality saves (null: never reached)
        row |= {f"{c.label} saving": c.saving if np.isfinite(c.saving) else None for c in ev.curves}
        results.append(row)
        shipped, shrunk_saving = _percent(row["as shipped saving"]), _percent(row["shrunk saving"])
        print(
            f"split {seed}: alpha {row['alpha']:.3f}; AIQ as shipped {row['as shipped']:.4f}, "
            f"shrunk {row['shrunk']:.4f}, mixing hull {row['hull_aiq']:.4f}; saving at the best model's "
            f"quality as shipped {shipped}, shrunk {shrunk_saving}",
            flush=True,
        )
    Path(out).mkdir(parents=True, exist_ok=True)
    summary = {"models": models, "prompts": len(prompts), "splits": results}
    (Path(out) / "results.json").write_text(json.dumps(summary, indent=2) + "\n")


def _percent(saving: float | None) -> str:
    return "never" if saving is None else f"{saving:.1%}"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
