"""``--ray-actors`` of the bulk commands: refused where it would do nothing (no ``--ray``), and
below 1, before any work; these checks need no Ray installed."""

from __future__ import annotations

import pytest

from lmroute.cli import main


@pytest.fixture
def argvs(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    label = ["label", "--prompts", str(prompts), "--mode", "golden", "--out", str(tmp_path / "run")]
    label += ["--model", "name=a,base_url=http://127.0.0.1:9/v1"]
    score = ["score", "--router", "length", "--input", str(prompts), "--output", str(tmp_path / "s.jsonl")]
    return {"label": label, "score": score}


@pytest.mark.parametrize("command", ["score", "label"])
def test_ray_actors_without_ray_is_refused_not_ignored(command, argvs, tmp_path, capsys):
    assert main([*argvs[command], "--ray-actors", "4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "lmroute: error: --ray-actors goes with --ray (or --ray-address): without it nothing runs on Ray"
    ]
    assert not (tmp_path / "s.jsonl").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["score", "label"])
def test_ray_actors_below_one_is_refused(command, argvs, capsys):
    assert main([*argvs[command], "--ray", "--ray-actors", "0"]) == 1
    assert capsys.readouterr().err.strip() == "lmroute: error: --ray-actors must be at least 1, not 0"
