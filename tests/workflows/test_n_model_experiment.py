"""The N-model experiment runner on small synthetic outcome files: cross-fit, leave-one-source-out
(and the file it cannot route), and what it writes."""

from __future__ import annotations

import json

import numpy as np
import yaml
from _fake_embedder import HashEmbedder

from lmroute.workflows.n_models import (
    NModelExperimentConfig,
    run_n_model_experiment,
    write_n_model_experiment,
)

FAST = {"dim": 16, "epochs": 15, "batch_size": 64, "lr": 1e-2, "noise": 0.02, "ties": "half"}


def _outcomes(path, models, n, seed):
    """``big`` answers the hard prompts, everyone answers the easy ones; ``small`` is cheapest."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for i in range(n):
            hard = i % 2 == 0
            prompt = (
                f"{'integral derive prove' if hard else 'hello joke chat'} w{rng.integers(30)} {seed}-{i}"
            )
            scores = {m: float(not hard or m == "big") for m in models}
            f.write(json.dumps({"prompt": prompt, "scores": scores}) + "\n")


def test_cross_fit_and_leave_one_source_out(tmp_path):
    _outcomes(tmp_path / "one.jsonl", ["big", "mid", "small"], 120, 1)
    _outcomes(tmp_path / "two.jsonl", ["big", "small"], 120, 2)
    _outcomes(tmp_path / "three.jsonl", ["other", "small"], 60, 3)  # shares one model only
    prices = {
        "big": {"input_per_1m": 10.0, "output_per_1m": 30.0},
        "mid": {"input_per_1m": 1.0, "output_per_1m": 3.0},
        "small": {"input_per_1m": 0.1, "output_per_1m": 0.3},
        "other": {"input_per_1m": 0.5, "output_per_1m": 0.5},
    }
    (tmp_path / "prices.yaml").write_text(yaml.safe_dump(prices))
    config = NModelExperimentConfig.model_validate(
        {
            "kind": "n-models",
            "files": ["one.jsonl", "two.jsonl", "three.jsonl"],
            "prices": "prices.yaml",
            "router": {"name": "mf", "options": FAST},
            "folds": 2,
            "knobs": 50,
        }
    )
    logged = []
    result = run_n_model_experiment(
        config, data_dir=tmp_path, config_dir=tmp_path, embedder=HashEmbedder(64), log=logged.append
    )
    keys = set(result.evaluations)
    assert {("cross-fit", "one"), ("cross-fit", "two"), ("leave-one-source-out", "one")} <= keys
    assert ("leave-one-source-out", "three") not in keys
    assert any("three: leave-one-source-out cannot route" in n for n in result.notes)
    # the router learned that only big answers the hard prompts: it beats mixing big and small
    ev = result.evaluations[("cross-fit", "two")]
    assert ev.curves[0].aiq > ev.baseline.aiq
    assert ev.curves[0].saving > 0.3
    written = write_n_model_experiment(result, tmp_path / "out")
    assert (tmp_path / "out" / "cross-fit-two.png") in written
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {e["benchmark"] for e in saved["evaluations"]} >= {"one", "two"}
    assert "| mf |" in (tmp_path / "out" / "results.md").read_text()
