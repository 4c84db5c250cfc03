"""A router name nothing is registered under, on Ray: the one-line error of the command without
``--ray``, before Ray starts (the workers or scoring replicas would fail to start, and the command
end with Ray's traceback a minute later). Ray itself must not be reached."""

from __future__ import annotations

import json

import pytest
from fake_openai import free_port

from lmroute.cli import main

ray = pytest.importorskip("ray")

UNKNOWN = "lmroute: error: unknown router 'nosuch'; known routers: "


pytestmark = pytest.mark.usefixtures("ray_not_started")


def _error_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("output", [True, False], ids=["to-a-file", "to-standard-output"])
def test_score(tmp_path, capsys, output):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hello"}) + "\n")
    scores = tmp_path / "scores.jsonl"
    argv = ["score", "--router", "nosuch", "--input", str(prompts), "--quiet", "--ray"]
    assert main([*argv, *(["--output", str(scores)] if output else [])]) == 1
    err = _error_lines(capsys)
    assert len(err) == 1 and err[0].startswith(UNKNOWN), err
    assert not scores.exists()


@pytest.mark.parametrize("spec", ["nosuch", "alias=nosuch"])
def test_serve(capsys, spec):
    argv = ["serve", "--routers", "length", spec, "--port", str(free_port()), "--ray"]
    for tier in ("strong", "weak"):
        argv += [f"--{tier}-base-url", "http://127.0.0.1:9/v1", f"--{tier}-model", tier]
    assert main(argv) == 1
    err = _error_lines(capsys)
    assert len(err) == 1 and err[0].startswith(UNKNOWN), err
