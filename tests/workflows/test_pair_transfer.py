"""The pair-transfer experiment: its config, its benchmark reader, and a whole run on toy data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from _fake_embedder import HashEmbedder

from lmroute.cli import main
from lmroute.exceptions import ConfigError, DataError, UnknownModelError
from lmroute.workflows.pair_transfer import (
    PairTransferConfig,
    TransferBenchmark,
    TransferRouter,
    load_pair_transfer_config,
    read_pair_benchmark,
    run_pair_transfer,
)

MODELS = ("big", "mid", "small")


def write_bench(path, n=60, *, drop_small_every=0):
    """Prompts of growing length; ``big`` answers all, ``small`` fails the long half, ``mid`` the
    longest third; every ``drop_small_every``-th row lacks ``small``."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        scores = {"big": 1, "mid": int(i < 2 * n // 3), "small": int(i < n // 2 or rng.random() < 0.1)}
        if drop_small_every and i % drop_small_every == 0:
            del scores["small"]
        lines.append(json.dumps({"id": f"q{i}", "prompt": f"question {i} " + "word " * i, "scores": scores}))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_battles(path):
    """Battles in which big beats mid beats small, so a router learns all three."""
    rows = []
    for i in range(40):
        for a, b in (("big", "mid"), ("mid", "small"), ("big", "small")):
            rows.append({"prompt": f"task {i} " + "x " * i, "model_a": a, "model_b": b, "winner": "model_a"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_reader_skips_and_counts_rows_without_a_pairs_model(tmp_path):
    path = write_bench(tmp_path / "b.jsonl", n=30, drop_small_every=3)
    bench, skipped = read_pair_benchmark(path, [("big", "small")], name="toy")
    assert len(bench) == 20 and skipped == {"a pair's model missing": 10}
    assert bench.name == "toy" and bench.models == ["big", "small"] and bench.scale == 100.0
    keep = {f"question {i} " + "word " * i for i in (1, 2, 4, 5)}
    bench, skipped = read_pair_benchmark(path, [("big", "mid")], keep=keep)
    assert bench.ids == ("q1", "q2", "q4", "q5") and skipped == {"not among the kept prompts": 26}
    with pytest.raises(UnknownModelError, match="no scores of huge; it has: big, mid, small"):
        read_pair_benchmark(path, [("huge", "small")])
    with pytest.raises(DataError, match="no rows left"):
        read_pair_benchmark(path, [("big", "mid")], keep=set())


def test_bad_rows_and_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "scores": {"big": "high"}}\n')
    with pytest.raises(DataError, match="score of 'big' is not a number"):
        read_pair_benchmark(bad, [("big", "big")])
    bad.write_text('{"prompt": "", "scores": {"big": 1}}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: expected a non-empty 'prompt'"):
        read_pair_benchmark(bad, [("big", "big")])
    bad.write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_pair_benchmark(bad, [("big", "big")])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"routers": [{"router": "mf", "train": "mf"}]}, "either router"),
        ({"routers": [{"train": "mf"}]}, "needs sources"),
        ({"routers": [{"router": "mf", "sources": ["gold:mmlu"]}]}, "for a router the run trains"),
        ({"benchmarks": [{"file": "b.jsonl", "pairs": [["a", "a"]]}]}, "must differ"),
        ({"benchmarks": []}, "at least 1"),
        ({"colour": "blue"}, "colour"),
        # one router's results silently took the other's place
        ({"routers": [{"router": "mf"}, {"router": "mf"}]}, "two rows would be named 'mf'"),
        ({"routers": [{"router": "length"}]}, "two rows would be named 'length'"),
        # two table rows no one could tell apart, the later one's plot in place of the earlier one's
        (
            {"benchmarks": [{"file": f, "pairs": [["a", "b"]]} for f in ("b.jsonl", "sub/b.jsonl")]},
            "benchmarks: b's pair a / b is given twice",
        ),
        ({"benchmarks": [{"file": "b.jsonl", "pairs": [["a", "b"], ["c", "b"], ["a", "b"]]}]}, "given twice"),
    ],
)
def test_config_errors_name_the_problem(tmp_path, change, message):
    raw = {
        "kind": "pair-transfer",
        "benchmarks": [{"file": "b.jsonl", "pairs": [["a", "b"]]}],
        "routers": [{"router": "mf"}],
        **change,
    }
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message) as info:
        load_pair_transfer_config(path)
    assert str(path) in str(info.value)


@pytest.fixture
def fake_minilm(monkeypatch):
    """Routers that embed get a hashing embedder instead of MiniLM."""
    monkeypatch.setattr("lmroute.embeddings.get_embedder", lambda name="minilm", **_: HashEmbedder(32))


def toy_config(tmp_path) -> PairTransferConfig:
    bench = write_bench(tmp_path / "bench.jsonl", drop_small_every=7)
    battles = write_battles(tmp_path / "battles.jsonl")
    return PairTransferConfig.model_validate(
        {
            "kind": "pair-transfer",
            "benchmarks": [
                {"name": "toy", "file": str(bench), "pairs": [["big", "small"], ["mid", "small"]]}
            ],
            "routers": [
                {
                    "train": "mf",
                    "label": "toy-mf",
                    "sources": [f"battles:{battles}"],
                    "options": {"strong_model": "big", "weak_model": "mid", "epochs": 3, "dim": 4},
                },
                {"router": "length", "label": "len-again"},
            ],
            "bootstrap": 30,
        }
    )


def test_a_run_scores_every_router_unchanged_and_pair_aware(tmp_path, fake_minilm):
    config = toy_config(tmp_path)
    result = run_pair_transfer(config, data_dir=None, progress=False, log=lambda _: None)
    assert [(p.benchmark, p.strong_model, p.weak_model) for p in result.pairs] == [
        ("toy", "big", "small"),
        ("toy", "mid", "small"),
    ]
    first = result.pairs[0]
    names = [r.router for r in first.rows]
    assert names == ["toy-mf", "toy-mf (pair-aware)", "len-again", "random", "length"]
    assert first.prompts == 60 - 9 and first.resamples == 30
    assert first.row("toy-mf (pair-aware)").versus.keys() == {"random", "length", "toy-mf"}
    # length routes this toy benchmark perfectly well, and its copy scores exactly like it
    assert first.row("length").beats("random") and first.row("len-again").versus["length"][0] == 0
    assert first.row("random").seeds == 10
    assert any("skipped 9 rows" in n for n in result.notes)
    assert any("toy-mf: trained by this run on 120 battles" in n for n in result.notes)
    assert any("len-again: no pair-aware row" in n and "learned no models" in n for n in result.notes)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["pairs"][1]["rows"][1]["router"] == "toy-mf (pair-aware)"


def test_a_pair_outside_the_vocabulary_gets_no_pair_aware_row(tmp_path, fake_minilm):
    config = toy_config(tmp_path)
    bench = tmp_path / "other.jsonl"
    bench.write_text(
        "".join(
            json.dumps({"prompt": f"p {i} " + "y " * i, "scores": {"new": int(i % 3 > 0), "small": i % 2}})
            + "\n"
            for i in range(30)
        )
    )
    config.benchmarks[0].file = str(bench)
    config.benchmarks[0].pairs = [("new", "small")]
    result = run_pair_transfer(config, data_dir=None, progress=False, log=lambda _: None)
    assert "toy-mf (pair-aware)" not in [r.router for r in result.pairs[0].rows]
    assert any("no pair-aware row for new / small: not both in its vocabulary" in n for n in result.notes)


def test_lmroute_experiment_runs_a_pair_transfer_file(tmp_path, fake_minilm, capsys):
    config = toy_config(tmp_path)
    path = tmp_path / "transfer.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| toy: big / small (100.0 / " in printed and "- toy, big / small: toy-mf beats" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "results.json",
        "results.md",
        "toy--big--small.png",
        "toy--mid--small.png",
    ]
    assert json.loads((out / "results.json").read_text())["config"]["kind"] == "pair-transfer"


def test_lmroute_experiment_reports_a_bad_pair_transfer_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "transfer.yaml"
    path.write_text("kind: pair-transfer\nbenchmarks: [{file: x.jsonl, pairs: [[a, b]]}]\nrouters: []\n")
    assert main(["experiment", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: ") and err.count("\n") == 1 and "routers" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"routers": 1, "entry": {"router": "lenght"}}, "unknown router 'lenght'"),
        ({"routers": 1, "entry": {"train": "mf", "sources": ["x"], "options": {"epoch": 3}}}, "epoch"),
        (
            {
                "routers": 1,
                "entry": {"train": "bert", "sources": ["gold:mmlu"], "options": {"encoder": "gt-minilm"}},
            },
            "base model 'gt-minilm' is neither",
        ),
        (
            {"routers": 1, "entry": {"train": "mf", "sources": ["battles:batles.jsonl"]}},
            "batles.jsonl does not",
        ),
        (
            {"routers": 1, "entry": {"train": "mf", "sources": ["gold:mmlu?max_pair=3"]}},
            "unknown option 'max_pair",
        ),
        (
            {
                "routers": 1,
                "entry": {"train": "mf", "sources": ["gold:mmlu"], "exclude_benchmarks": ["gsm9k"]},
            },
            "benchmark 'gsm9k': not one of",
        ),
        ({"baselines": ["random", "lenght"]}, "unknown router 'lenght'"),
        ({"file": "bnech.jsonl"}, "bnech.jsonl"),
    ],
)
def test_a_misspelt_router_baseline_or_file_fails_before_the_first_training(
    tmp_path, fake_minilm, change, message
):
    # They were found only after the routers listed before them had trained.
    from lmroute.exceptions import LmrouteError

    config = toy_config(tmp_path)
    if "routers" in change:
        config.routers[change["routers"]] = TransferRouter.model_validate(change["entry"])
    elif "file" in change:
        config.benchmarks[0].file = str(tmp_path / change["file"])
    else:
        config.baselines = change["baselines"]
    logged: list[str] = []
    with pytest.raises(LmrouteError, match=message):
        run_pair_transfer(config, data_dir=None, progress=False, log=logged.append)
    assert logged == []


def test_a_pair_of_equal_mean_quality_fails_before_the_first_training(tmp_path, fake_minilm):
    # It failed after every router had trained and the benchmarks before it were evaluated, as
    # "strong and weak models have equal quality", naming no benchmark or pair.
    from lmroute.exceptions import LmrouteError

    config = toy_config(tmp_path)
    even = tmp_path / "even.jsonl"
    rows = [{"prompt": f"even question {i}", "scores": {"x": i % 2, "y": (i + 1) % 2}} for i in range(10)]
    even.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config.benchmarks.append(TransferBenchmark(file=str(even), pairs=[("x", "y")]))
    logged: list[str] = []
    with pytest.raises(
        LmrouteError, match=r"even\.jsonl: x and y have equal mean quality \(50\) on its 10 prompts"
    ):
        run_pair_transfer(config, data_dir=None, progress=False, log=logged.append)
    assert logged == []
