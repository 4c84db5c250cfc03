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
