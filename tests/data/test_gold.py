"""Golden-label battles from per-model scores, checked by hand."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lmroute.data.battles import Battle
from lmroute.data.benchmarks import Benchmark, load_benchmark
from lmroute.data.custom import read_custom
from lmroute.data.gold import battles_from_scores, gold_battles
from lmroute.exceptions import ConfigError, DataError, UnknownModelError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _bench(scores: dict[str, list[float]], name: str = "toy") -> Benchmark:
    n = len(next(iter(scores.values())))
    arrays = {m: np.array(v, dtype=float) for m, v in scores.items()}
    strong, weak = sorted(scores)[:2]
    return Benchmark(name, tuple(f"q{i}" for i in range(n)), arrays, strong, weak)


def test_correctness_scores_give_wins_ties_and_bothbad():
    bench = _bench({"big": [1, 0, 1, 0], "small": [0, 1, 1, 0]})
    assert gold_battles(bench) == [
        Battle("q0", "big", "small", "model_a", "gold:toy"),
        Battle("q1", "big", "small", "model_b", "gold:toy"),
        Battle("q2", "big", "small", "tie", "gold:toy"),
        Battle("q3", "big", "small", "tie (bothbad)", "gold:toy"),
    ]


def test_graded_scores_tie_without_bothbad_unless_asked():
    bench = _bench({"a": [8.0, 3.0, 2.0], "b": [8.0, 7.0, 2.0]})
    assert [b.winner for b in gold_battles(bench)] == ["tie", "model_b", "tie"]
    assert [b.winner for b in gold_battles(bench, bothbad_at=2.5)] == ["tie", "model_b", "tie (bothbad)"]
    binary = _bench({"a": [0, 0], "b": [0, 1]})
    assert [b.winner for b in gold_battles(binary, bothbad_at=None)] == ["tie", "model_b"]


def test_graded_wins_weigh_their_margin_and_correctness_wins_weigh_one():
    # gaps 0, 4, 1, 2 (mean decisive gap 7/3): a win by 4 points counts twice a win by 2
    bench = _bench({"a": [8.0, 3.0, 6.0, 9.0], "b": [8.0, 7.0, 5.0, 7.0]})
    weights = [b.weight for b in gold_battles(bench)]
    np.testing.assert_allclose(weights, [1.0, 12 / 7, 3 / 7, 6 / 7])
    assert [b.weight for b in gold_battles(bench, weigh_margins=False)] == [1.0] * 4
    binary = _bench({"big": [1, 0, 1, 0], "small": [0, 1, 1, 0]})
    assert [b.weight for b in gold_battles(binary)] == [1.0] * 4


def test_all_pairs_in_sorted_order_and_missing_scores():
    scores = {"c": [1, 1], "a": [0, np.nan], "b": [1, 0]}
    got = battles_from_scores(["p", "q"], scores, source="gold:x")
    assert [(b.prompt, b.model_a, b.model_b, b.winner) for b in got] == [
        ("p", "a", "b", "model_b"),
        ("p", "a", "c", "model_b"),
        ("p", "b", "c", "tie"),
        ("q", "b", "c", "model_b"),  # "a" has no score on q: no battle
    ]
    restricted = battles_from_scores(["p", "q"], scores, models=["c", "b"])
    assert [(b.model_a, b.model_b) for b in restricted] == [("c", "b"), ("c", "b")]


def test_sampled_pairs_are_distinct_seeded_and_cover_every_model():
    rng = np.random.default_rng(0)
    models = [f"m{i:02d}" for i in range(20)]  # 190 pairs per prompt
    scores = {m: rng.integers(0, 2, 300).astype(float) for m in models}
    prompts = [f"p{i}" for i in range(300)]
    got = battles_from_scores(prompts, scores, max_pairs_per_prompt=5, seed=1)
    assert len(got) == 300 * 5
    per_prompt = Counter(b.prompt for b in got)
    assert set(per_prompt.values()) == {5}
    assert all(len({(b.model_a, b.model_b) for b in got if b.prompt == p}) == 5 for p in prompts[:20])
    appearances = Counter(m for b in got for m in (b.model_a, b.model_b))
    assert set(appearances) == set(models)
    assert min(appearances.values()) > 0.6 * (2 * 1500 / 20)  # uniform: 150 expected each
    assert got == battles_from_scores(prompts, scores, max_pairs_per_prompt=5, seed=1)
    assert got != battles_from_scores(prompts, scores, max_pairs_per_prompt=5, seed=2)
    for b in got:
        sa, sb = scores[b.model_a][int(b.prompt[1:])], scores[b.model_b][int(b.prompt[1:])]
        assert b.winner == (
            "model_a" if sa > sb else "model_b" if sa < sb else "tie" if sa else "tie (bothbad)"
        )


def test_bad_requests():
    bench = _bench({"a": [1], "b": [0]})
    with pytest.raises(UnknownModelError, match="gpt-5"):
        gold_battles(bench, models=["a", "gpt-5"])
    with pytest.raises(DataError, match="at least two models"):
        gold_battles(bench, models=["a"])
    with pytest.raises(ConfigError, match="max_pairs_per_prompt"):
        gold_battles(bench, max_pairs_per_prompt=0)
    with pytest.raises(DataError, match="2 scores per model for 1 prompts"):
        battles_from_scores(["p"], {"a": [1, 0], "b": [0, 1]})


@pytest.mark.parametrize("name", ["scores.jsonl", "scores.csv"])
def test_custom_file_with_a_missing_score(name):
    table = read_custom(FIXTURES / name)
    prompts, scores = list(table.prompts), dict(table.scores)
    assert prompts == ["Compute 17*3", "Reverse 'abc'", "What is the 10th prime?"]
    assert sorted(scores) == ["big", "mid", "small"]
    assert np.isnan(scores["mid"][2]) and scores["big"].tolist() == [1, 1, 0]
    got = battles_from_scores(prompts, scores)
    assert len(got) == 3 + 3 + 1
    assert got[-1] == Battle("What is the 10th prime?", "big", "small", "tie (bothbad)", "gold")


def test_custom_file_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "scores": {"a": "high"}}\n')
    with pytest.raises(DataError, match="not a number"):
        read_custom(bad)
    bad.write_text('{"prompt": "", "scores": {"a": 1}}\n')
    with pytest.raises(DataError, match="'prompt' must be a non-empty string"):
        read_custom(bad)


def test_custom_model_names_are_stripped_and_never_empty_nor_given_twice(tmp_path):
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text(
        '{"prompt": "x", "scores": {"gpt-4 ": 1, "mixtral": 0}, "cost": {"gpt-4 ": 0.5, "mixtral": 0.1}}\n'
        '{"prompt": "y", "scores": {"gpt-4": 0, "mixtral": 1}, "cost": {"gpt-4": 0.5, "mixtral": 0.1}}\n'
    )
    table = read_custom(jsonl)
    assert table.models == ["gpt-4", "mixtral"] and list(table.scores["gpt-4"]) == [1, 0]
    assert list(table.costs["gpt-4"]) == [0.5, 0.5]
    csv = tmp_path / "s.csv"
    csv.write_text("prompt, gpt-4 ,mixtral\nx,1,0\n")
    assert read_custom(csv).models == ["gpt-4", "mixtral"]
    for name in ("", " "):
        jsonl.write_text(json.dumps({"prompt": "x", "scores": {name: 1, "b": 0}}) + "\n")
        with pytest.raises(DataError, match=r"s\.jsonl:1: a model name is empty"):
            read_custom(jsonl)
    jsonl.write_text('{"prompt": "x", "scores": {"a": 1, "a ": 0}}\n')
    with pytest.raises(DataError, match=r"s\.jsonl:1: model 'a' is named twice"):
        read_custom(jsonl)
    csv.write_text("prompt,,b\nx,1,0\n")
    with pytest.raises(DataError, match=r"s\.csv:1: a model name is empty"):
        read_custom(csv)
    # the csv module would keep only the last of two equal columns
    csv.write_text("prompt,a,b,a\nx,1,0,0\n")
    with pytest.raises(DataError, match=r"s\.csv:1: column\(s\) 'a' appear more than once"):
        read_custom(csv)


def test_real_reference_pair_benchmarks(data_dir):
    bench = load_benchmark("gsm8k", data_dir=data_dir)
    got = gold_battles(bench)
    assert len(got) == len(bench) == 1307
    winners = Counter(b.winner for b in got)
    strong_only = int(((bench.strong == 1) & (bench.weak == 0)).sum())
    assert winners["model_a"] == strong_only  # gpt-4-1106-preview sorts first: it is model_a
    assert winners["tie (bothbad)"] == int(((bench.strong == 0) & (bench.weak == 0)).sum())
    mt = gold_battles(load_benchmark("mt-bench", data_dir=data_dir))
    assert "tie (bothbad)" not in {b.winner for b in mt}  # graded 1-10: no "wrong"


def test_real_many_model_file(data_dir):
    table = read_custom(data_dir / "zeroeval" / "math-l5.jsonl")
    prompts, scores = list(table.prompts), dict(table.scores)
    assert len(prompts) == 721 and len(scores) == 40  # the README's counts
    assert np.isnan(scores["Meta-Llama-3.1-70B-Instruct@hyperbolic"]).sum() == 296
    got = battles_from_scores(prompts, scores, max_pairs_per_prompt=16)
    assert len(got) == 721 * 16
