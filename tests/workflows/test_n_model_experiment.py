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
    note = "three: leave-one-source-out cannot route: the other files hold 1 of its models (small)"
    assert note in result.notes
    # the router learned that only big answers the hard prompts: it beats mixing big and small
    ev = result.evaluations[("cross-fit", "two")]
    assert ev.curves[0].aiq > ev.baseline.aiq
    assert ev.curves[0].saving > 0.3
    written = write_n_model_experiment(result, tmp_path / "out")
    assert (tmp_path / "out" / "cross-fit-two.png") in written
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {e["benchmark"] for e in saved["evaluations"]} >= {"one", "two"}
    assert "| mf |" in (tmp_path / "out" / "results.md").read_text()
    assert "shrinkage alpha per fold: " in (tmp_path / "out" / "results.md").read_text()
    assert len(saved["shrinkage_alphas"]["two"]) == 2


def test_cross_fit_shrinkage_is_chosen_on_the_training_folds_only(tmp_path, monkeypatch):
    from lmroute.data.custom import read_custom
    from lmroute.workflows import n_models

    _outcomes(tmp_path / "one.jsonl", ["big", "mid", "small"], 90, 1)
    table = read_custom(tmp_path / "one.jsonl")
    config = NModelExperimentConfig.model_validate(
        {
            "kind": "n-models",
            "files": ["one.jsonl"],
            "prices": "prices.yaml",
            "router": {"name": "mf", "options": FAST},
            "folds": 3,
        }
    )
    models = ["big", "mid", "small"]
    trained, fitted = [], []
    real_train, real_fit = n_models.train_on, n_models.fit_shrinkage

    def spy_train(tables, *args, **kwargs):
        trained.append(set(tables[0].prompts))
        return real_train(tables, *args, **kwargs)

    def spy_fit(names, train_s, train_p, val_s, val_p):
        fitted.append((len(train_s), len(val_s)))
        return real_fit(names, train_s, train_p, val_s, val_p)

    monkeypatch.setattr(n_models, "train_on", spy_train)
    monkeypatch.setattr(n_models, "fit_shrinkage", spy_fit)
    embedder = HashEmbedder(64)
    predicted, alphas = n_models.cross_fit_qualities(table, table, models, config, embedder)
    assert len(alphas) == 3 and all(0 <= a <= 1 for a in alphas)
    splits = n_models.grouped_splits(n_models.question_groups(table.prompts), 3, seed=config.seed)
    for seen, (n_train, n_val), (train_idx, held_idx) in zip(trained, fitted, splits, strict=True):
        held = {table.prompts[i] for i in held_idx}
        assert not seen & held  # the router never saw the evaluated fold
        assert len(seen) == n_train and n_train + n_val == len(train_idx)  # validation: held out of training
    # changing the evaluated fold's outcomes changes neither its predictions nor its alpha
    held_idx = splits[0][1]
    flipped = dict(table.scores)
    flipped["big"] = table.scores["big"].copy()
    flipped["big"][held_idx] = 1.0 - flipped["big"][held_idx]
    changed = n_models.take_rows(
        n_models.ScoreTable(table.name, table.prompts, flipped), np.arange(len(table))
    )
    again, alphas_again = n_models.cross_fit_qualities(changed, changed, models, config, embedder)
    np.testing.assert_array_equal(again[held_idx], predicted[held_idx])
    assert alphas_again[0] == alphas[0]


def test_a_models_entry_or_files_that_no_label_tells_apart_are_refused(tmp_path):
    import pytest

    from lmroute.exceptions import ConfigError
    from lmroute.workflows.kinds import load_kind_config

    path = tmp_path / "e.yaml"
    head = "kind: n-models\nprices: prices.yaml\nrouter: {name: mf}\n"
    # a misspelt label: its candidates were silently not used (every covered model was routed among)
    path.write_text(
        head + "files: [mmlu-pro/outcomes.jsonl, zeroeval/crux.jsonl]\nmodels: {mmlu_pro: [a, b]}\n"
    )
    with pytest.raises(
        ConfigError, match=r"e\.yaml: .*models: 'mmlu_pro' is no file's label .*: mmlu-pro, crux\)"
    ):
        load_kind_config(path)
    # one file's results silently took the other's place
    path.write_text(head + "files: [zeroeval/crux.jsonl, other/crux.jsonl]\n")
    with pytest.raises(ConfigError, match="two files have the label 'crux'"):
        load_kind_config(path)
    path.write_text(head + "files: [mmlu-pro/outcomes.jsonl]\nmodels: {mmlu-pro: [a, b]}\n")
    assert load_kind_config(path).models == {"mmlu-pro": ["a", "b"]}


def test_an_unknown_or_unpriced_model_of_a_later_file_fails_before_any_training(tmp_path):
    # It was found only at that file's turn, after the files before it had been cross-fitted.
    import pytest

    from lmroute.exceptions import LmrouteError

    _outcomes(tmp_path / "one.jsonl", ["big", "small"], 20, 1)
    _outcomes(tmp_path / "two.jsonl", ["big", "small", "new"], 20, 2)
    (tmp_path / "prices.yaml").write_text(
        yaml.safe_dump(
            {m: {"input_per_1m": p, "output_per_1m": p} for m, p in (("big", 10.0), ("small", 1.0))}
        )
    )
    for models, message in [({"two": ["big", "smal"]}, "smal"), ({}, "no price for new")]:
        config = NModelExperimentConfig.model_validate(
            {
                "kind": "n-models",
                "files": ["one.jsonl", "two.jsonl"],
                "prices": "prices.yaml",
                "router": {"name": "mf", "options": FAST},
                "models": models,
                "folds": 2,
            }
        )
        logged: list[str] = []
        with pytest.raises(LmrouteError, match=message):
            run_n_model_experiment(
                config, data_dir=tmp_path, config_dir=tmp_path, embedder=HashEmbedder(64), log=logged.append
            )
        assert logged == []
