"""``lmroute data``: outputs that would replace the command's own inputs are refused."""

from __future__ import annotations

import json

import pytest

from lmroute.cli import main

BATTLES = "".join(
    json.dumps({"prompt": f"prompt {i}", "model_a": "a", "model_b": "b", "winner": "model_a"}) + "\n"
    for i in range(4)
)
BENCH = "".join(json.dumps({"prompt": f"prompt {i}", "scores": {"a": 1, "b": 0}}) + "\n" for i in range(2))


@pytest.mark.parametrize("option", ["--out", "--report"])
@pytest.mark.parametrize("how", ["--data-dir", "LMROUTE_DATA_DIR"])
def test_an_output_onto_a_source_found_in_the_data_folder_is_refused(
    option, how, tmp_path, capsys, monkeypatch
):
    folder = tmp_path / "data"
    (folder / "mine").mkdir(parents=True)
    source = folder / "mine" / "battles.jsonl"
    source.write_text(BATTLES)
    monkeypatch.chdir(tmp_path)
    where = ["--data-dir", str(folder)] if how == "--data-dir" else []
    if how == "LMROUTE_DATA_DIR":
        monkeypatch.setenv("LMROUTE_DATA_DIR", str(folder))
    # The source is named relative to the data folder; the output names the same file from here.
    code = main(["data", "battles:mine/battles.jsonl", option, "data/mine/battles.jsonl", *where])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("lmroute: error: ") and err.count("\n") == 1, err
    assert "is the input file" in err
    assert source.read_text() == BATTLES


def test_an_output_onto_the_excluded_benchmark_file_is_refused(tmp_path, capsys, monkeypatch):
    (tmp_path / "battles.jsonl").write_text(BATTLES)
    folder = tmp_path / "data"
    folder.mkdir()
    bench = folder / "bench.jsonl"
    bench.write_text(BENCH)
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "data",
            "battles:battles.jsonl",
            "--exclude-benchmark",
            "bench.jsonl",
            "--exact-only",
            "--out",
            str(bench),
            "--data-dir",
            str(folder),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert "is the input file" in err
    assert bench.read_text() == BENCH


def test_an_alpaca_eval_folder_source_is_an_input_too(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "data" / "alpaca-eval"
    folder.mkdir(parents=True)
    judgments = folder / "judgments.jsonl"
    record = {"prompt": "p", "model_a": "a", "model_b": "b", "preference": 2.0, "annotator": "j"}
    judgments.write_text("".join(json.dumps({**record, "prompt": f"p{i}"}) + "\n" for i in range(3)))
    before = judgments.read_text()
    monkeypatch.chdir(tmp_path)
    code = main(["data", "alpaca-eval", "--out", str(judgments), "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "is the input file" in err
    assert judgments.read_text() == before


@pytest.mark.parametrize("option", [["--threshold", "0.5"], ["--exact-only"]])
def test_decontamination_settings_without_decontamination_are_refused(option, tmp_path, capsys, monkeypatch):
    """They set how prompts are matched against benchmark prompts; without a benchmark to match
    against they did nothing, and the report looked like a decontaminated one had been asked for."""
    (tmp_path / "battles.jsonl").write_text(BATTLES)
    monkeypatch.chdir(tmp_path)
    code = main(["data", "battles:battles.jsonl", *option, "--out", "out.jsonl"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("lmroute: error: ") and err.count("\n") == 1, err
    assert option[0] in err and "--exclude-benchmark" in err and "--decontaminate" in err
    assert not (tmp_path / "out.jsonl").exists()
    # With a benchmark to match against, they apply.
    bench = tmp_path / "bench.jsonl"
    bench.write_text(BENCH)
    argv = ["data", "battles:battles.jsonl", *option, "--exclude-benchmark", str(bench), "--exact-only"]
    assert main([*argv, "--out", "out.jsonl"]) == 0
    assert (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("which", ["prompts", "source"])
def test_similarity_json_onto_an_input_is_refused(which, tmp_path, capsys, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2+2?\n")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "battles.jsonl").write_text(BATTLES)
    monkeypatch.chdir(tmp_path)
    target = prompts if which == "prompts" else folder / "battles.jsonl"
    before = target.read_text()
    argv = ["data", "similarity", "prompts.txt", "--against", "battles:battles.jsonl", "--data-dir", "data"]
    code = main([*argv, "--json", str(target)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("lmroute: error: ") and err.count("\n") == 1, err
    assert "--json" in err and "is the input file" in err
    assert target.read_text() == before


EXCLUDING = ["--exclude-benchmark", "mmlu", "--exclude-benchmark", "b.jsonl"]
REPEATED = {
    "train --data": (
        ["train", "mf", "--out", "r", "--data", "battles:a.jsonl", "--data", "gold:b.jsonl"],
        "data",
    ),
    "train --exclude-benchmark": (
        ["train", "mf", "--out", "r", "--data", "battles:a.jsonl", *EXCLUDING],
        "exclude_benchmark",
    ),
    "data --exclude-benchmark": (
        ["data", "battles:a.jsonl", "--exclude-benchmark", "mmlu", "--exclude-benchmark", "b.jsonl"],
        "exclude_benchmark",
    ),
    "data --alias": (["data", "battles:a.jsonl", "--alias", "a=A", "--alias", "b=B"], "alias"),
    "data similarity --against": (
        ["data-similarity", "mmlu", "--against", "battles:a.jsonl", "--against", "gold:b.jsonl"],
        "against",
    ),
    "data similarity --cuts": (
        ["data-similarity", "mmlu", "--against", "mf", "--cuts", "0.9", "--cuts", "0.5"],
        "cuts",
    ),
    "data pull --only": (["data pull", "--only", "mmlu", "--only", "gsm8k"], "only"),
    "eval --routers": (["eval", "--benchmark", "b.jsonl", "--routers", "mf", "--routers", "bert"], "routers"),
    "serve --routers": (["serve", "--routers", "mf", "--routers", "x=r"], "routers"),
    "calibrate --thresholds": (
        ["calibrate", "--router", "mf", "--thresholds", "0.2", "--thresholds", "0.7"],
        "thresholds",
    ),
    "score --models": (
        ["score", "--router", "mf", "--input", "p.jsonl", "--models", "a", "--models", "b"],
        "models",
    ),
    "eval --models": (["eval", "--benchmark", "b.jsonl", "--models", "a", "--models", "b"], "models"),
    "calibrate --models": (["calibrate", "--router", "mf", "--models", "a", "--models", "b"], "models"),
    "shrink --models": (
        [
            "shrink",
            "--router",
            "mf",
            "--benchmark",
            "b.jsonl",
            "--out",
            "r",
            "--models",
            "a",
            "--models",
            "b",
        ],
        "models",
    ),
}


@pytest.mark.parametrize("case", list(REPEATED))
def test_a_repeated_list_option_adds_to_the_list(case):
    """Given twice, the second list replaced the first without a word: ``--exclude-benchmark mmlu
    --exclude-benchmark gsm8k`` left MMLU's prompts in the training data."""
    from lmroute.cli import build_parser

    argv, dest = REPEATED[case]
    given = [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == "--" + dest.replace("_", "-")]
    assert [str(v) for v in getattr(build_parser().parse_args(argv), dest)] == given


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "mf", "--out", "r", "--data", "battles:a.jsonl", "--exclude-benchmark"],
        ["data", "battles:a.jsonl", "--exclude-benchmark"],
        ["data", "battles:a.jsonl", "--alias"],
    ],
)
def test_a_list_option_given_without_a_value_is_refused(argv, capsys):
    """``--exclude-benchmark`` with no name decontaminated against nothing, without a word."""
    from lmroute.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert f"{argv[-1]}: expected at least one argument" in capsys.readouterr().err


def test_every_excluded_benchmark_is_decontaminated_against(tmp_path, capsys, monkeypatch):
    (tmp_path / "battles.jsonl").write_text(BATTLES)
    for name, prompt in (("one", "prompt 0"), ("two", "prompt 1")):
        (tmp_path / f"{name}.jsonl").write_text(
            json.dumps({"prompt": prompt, "scores": {"a": 1, "b": 0}}) + "\n"
        )
    monkeypatch.chdir(tmp_path)
    argv = ["data", "battles:battles.jsonl", "--exact-only", "--out", "out.jsonl"]
    assert main([*argv, "--exclude-benchmark", "one.jsonl", "--exclude-benchmark", "two.jsonl"]) == 0
    kept = [json.loads(line)["prompt"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert kept == ["prompt 2", "prompt 3"]
