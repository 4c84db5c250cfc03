"""``lmroute data similarity``: prompt sets, training sources and routers' recorded sources."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _fake_embedder import HashEmbedder

from lmroute.cli import main
from lmroute.exceptions import CheckpointError, ConfigError, DataError, UnknownRouterError
from lmroute.workflows.similarity import data_similarity, read_prompt_set, training_prompts
from lmroute.workflows.train import train_router


def battles_file(path, prompts):
    path.write_text(
        "".join(
            json.dumps({"prompt": p, "model_a": "a", "model_b": "b", "winner": "model_a"}) + "\n"
            for p in prompts
        )
    )
    return path


def test_prompt_sets_from_benchmarks_and_files(data_dir, tmp_path):
    name, prompts = read_prompt_set("GSM8K", data_dir=data_dir)
    assert name == "gsm8k" and len(prompts) == 1307
    name, prompts = read_prompt_set("mt_bench", data_dir=data_dir)
    assert name == "mt-bench" and len(prompts) == 72  # the routed first turns
    jsonl = tmp_path / "bench.jsonl"
    jsonl.write_text('{"prompt": "one", "scores": {"a": 1}}\n{"prompt": "two", "scores": {"a": 0}}\n')
    csv = tmp_path / "bench.csv"
    csv.write_text('prompt,a\none,1\n"two, quoted",0\n')
    text = tmp_path / "prompts.txt"
    text.write_text("one\ntwo\n")
    assert read_prompt_set(str(jsonl))[1] == ["one", "two"]
    assert read_prompt_set(str(csv))[1] == ["one", "two, quoted"]
    assert read_prompt_set(str(text)) == (str(text), ["one", "two"])


@pytest.mark.parametrize(
    "content, message",
    [("", "is empty"), ("\n \n", "is empty"), ('{"text": "x"}\n', "'prompt' field")],
)
def test_bad_prompt_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_prompt_set(str(path))
    with pytest.raises(DataError, match="neither a benchmark"):
        read_prompt_set(str(tmp_path / "missing.jsonl"))


def test_sources_give_their_distinct_prompts(tmp_path, data_dir):
    a = battles_file(tmp_path / "a.jsonl", ["x y", "x y", "z"])
    got = training_prompts([f"battles:{a}", "gold:mt-bench"], data_dir=data_dir)
    assert got[f"battles:{a}"] == ["x y", "z"]
    assert len(got["gold:mt-bench"]) == 72


@pytest.mark.parametrize(
    "item, error, message",
    [
        ("nope", ConfigError, "neither a source spec"),
        ("crux.jsonl", ConfigError, "neither a source spec"),
        ("foo:bar", ConfigError, "unknown source kind"),
        ("battles:missing.jsonl", DataError, "missing.jsonl"),
        ("length", CheckpointError, "records no training sources"),
    ],
)
def test_unknown_sources_are_clear_errors(item, error, message, tmp_path, data_dir):
    with pytest.raises(error, match=message):
        training_prompts([item], data_dir=data_dir)


@pytest.mark.parametrize(
    "against, cuts, error, message",
    [
        (["gold:mt-bench", "battles:missing.jsonl"], (0.9,), DataError, "missing.jsonl"),
        (["gold:mt-bench"], (2.0,), ConfigError, "cuts"),
        (["gold:mt-bench", "gold:mt-bench"], (0.9,), ConfigError, "given twice"),
    ],
)
def test_argument_errors_come_before_any_benchmark_is_read(against, cuts, error, message, monkeypatch):
    # A missing --against file or a cut out of range was found after the benchmark was downloaded.
    def no_download(*args, **kwargs):
        raise AssertionError("a benchmark was read before the arguments were checked")

    monkeypatch.setattr("lmroute.workflows.similarity.load_benchmark", no_download)
    monkeypatch.setattr("lmroute.data.prepare.prepare_battles", no_download)
    with pytest.raises(error, match=message):
        data_similarity(["gsm8k"], against, embedder=HashEmbedder(), cuts=cuts)


def test_a_directory_that_is_no_router_is_a_clear_error(tmp_path):
    with pytest.raises(UnknownRouterError, match="not a router directory"):
        training_prompts([str(tmp_path)])


def test_a_router_that_embeds_nothing_trains_with_an_embedder_for_decontamination(tmp_path, data_dir):
    """The embedder finds near duplicates of the benchmark; the router itself is built without it."""
    _, mt_bench = read_prompt_set("mt-bench", data_dir=data_dir)
    a = battles_file(tmp_path / "a.jsonl", ["hello there", mt_bench[3], "how are you"])
    router = train_router(
        "length",
        [f"battles:{a}"],
        data_dir=data_dir,
        exclude_benchmarks=["mt-bench"],
        embedder=HashEmbedder(32),
        progress=False,
    )
    assert router.name == "length" and router.metadata["training"]["battles"] == 2


def test_a_router_gives_its_recorded_sources_as_it_used_them(tmp_path, data_dir):
    """Its benchmark's gold left out, near duplicates of that benchmark dropped."""
    embedder = HashEmbedder(32)
    _, mt_bench = read_prompt_set("mt-bench", data_dir=data_dir)
    a = battles_file(tmp_path / "a.jsonl", ["hello there", mt_bench[3], "how are you"])
    b = battles_file(tmp_path / "b.jsonl", ["a question", "another question"])
    sources = [f"battles:{a}", f"battles:{b}", "gold:mt-bench"]
    out = tmp_path / "router"
    train_router(
        "sw_ranking",
        sources,
        out=out,
        data_dir=data_dir,
        options={"strong_model": "a", "weak_model": "b"},
        exclude_benchmarks=["mt-bench"],
        embedder=embedder,
        progress=False,
    )
    got = training_prompts([str(out)], data_dir=data_dir, embedder=embedder)
    suffix = " (decontaminated against mt-bench)"
    assert got == {
        f"battles:{a}{suffix}": ["hello there", "how are you"],
        f"battles:{b}{suffix}": ["a question", "another question"],
    }
    with pytest.raises(ConfigError, match="given twice"):
        training_prompts([str(out), str(out)], data_dir=data_dir, embedder=embedder)


def test_the_shipped_router_names_its_six_sources(data_dir):
    got = training_prompts(["mf"], data_dir=data_dir)
    assert list(got) == [
        "battles:arena-hard/battles.jsonl",
        "gold:mmlu",
        "gold:gsm8k",
        "gold:mt-bench",
        "gold:zeroeval/crux.jsonl",
        "gold:zeroeval/math-l5.jsonl",
    ]
    assert len(got["gold:mmlu"]) == 13932  # 14,037 rows, 105 repeated prompt strings


def test_a_benchmark_against_its_own_gold_scores_one(data_dir, tmp_path):
    a = battles_file(tmp_path / "a.jsonl", ["Tell me a joke about cats.", "What is the capital of France?"])
    (rep,) = data_similarity(
        ["mt-bench"], ["gold:mt-bench", f"battles:{a}"], data_dir=data_dir, embedder=HashEmbedder()
    )
    own, other = rep.sources
    assert own.score == pytest.approx(1.0, abs=1e-6) and np.all(own.nearest > 1 - 1e-6)
    assert other.score < 1 and rep.without("gold:mt-bench").score == pytest.approx(other.score)


def test_cli_prints_the_table_and_writes_json(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setattr("lmroute.embeddings.get_embedder", lambda name: HashEmbedder())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me a joke about cats.\nWhat is 2 + 2?\n")
    a = battles_file(tmp_path / "a.jsonl", ["Tell me a joke about cats.", "Write a poem."])
    out = tmp_path / "sim.json"
    argv = [
        "data",
        "similarity",
        str(prompts),
        "--against",
        f"battles:{a}",
        "--cuts",
        "0.99",
        "0.5",
        "--json",
        str(out),
    ]
    code = main([*argv, "--data-dir", str(data_dir)])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"{prompts}: 2 prompts" in printed and ">=0.99" in printed and "all but it" not in printed
    (data,) = json.loads(out.read_text())
    assert data["overall"]["share_at_least"]["0.99"] == 0.5
    assert data["sources"][0]["train_prompts"] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "similarity", "gsm8k", "--against", "nope"], "neither a source spec"),
        (["data", "similarity", "nothing.jsonl", "--against", "gold:mmlu"], "neither a benchmark"),
        (["data", "similarity", "gsm8k", "--against", "gold:mmlu", "--cuts", "2"], "cuts"),
    ],
)
def test_cli_errors_are_one_line(argv, message, data_dir, monkeypatch, capsys):
    monkeypatch.setattr("lmroute.embeddings.get_embedder", lambda name: HashEmbedder())
    code = main([*argv, "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("lmroute: error: ") and err.count("\n") == 1 and message in err


def test_data_still_takes_sources_and_help_names_similarity(tmp_path, capsys):
    a = battles_file(tmp_path / "a.jsonl", ["x", "y", "z"])
    assert main(["data", f"battles:{a}"]) == 0
    assert "loaded 3 battles" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    assert "lmroute data similarity" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "similarity", "--help"])
    assert capsys.readouterr().out.startswith("usage: lmroute data similarity")


def test_similarity_against_apgr_is_written_as_a_plot_and_its_points(tmp_path):
    from lmroute.evaluation.correlation import correlation
    from lmroute.workflows.similarity import SimilarityVsApgr, write_similarity_vs_apgr

    similarity, apgr = [0.9, 0.8, 0.2, 0.4], [0.7, 0.65, 0.5, 0.55]
    sources = ["battles:cats.jsonl", "battles:pets.jsonl", "battles:maths.jsonl", "battles:code.jsonl"]
    result = SimilarityVsApgr("toy", sources, similarity, apgr, correlation(similarity, apgr))
    assert result.correlation.exact and result.correlation.permutations == 24
    written = write_similarity_vs_apgr(result, tmp_path / "out")
    assert [p.name for p in written] == ["similarity-vs-apgr.png", "similarity-vs-apgr.json"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(written[1].read_text())
    assert data["router"] == "toy" and [p["apgr"] for p in data["points"]] == [0.7, 0.65, 0.5, 0.55]
