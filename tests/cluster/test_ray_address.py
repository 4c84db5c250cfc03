"""A Ray address where no cluster answers: every command on Ray stops at once with one line, and
leaves no file behind (``ray.init`` there would retry for many minutes, then raise a
traceback; here it must not be reached at all)."""

from __future__ import annotations

import json

import pytest
from fake_openai import free_port

from lmroute.cli import main

ray = pytest.importorskip("ray")

UPSTREAM = "http://127.0.0.1:9/v1"


pytestmark = pytest.mark.usefixtures("ray_not_started")


@pytest.fixture(params=["closed-port", "not-an-address"])
def address(request) -> tuple[str, str]:
    """An address, and what the error must say of it."""
    if request.param == "closed-port":
        port = free_port()  # nothing listens there
        return f"127.0.0.1:{port}", f"no Ray cluster answers at 127.0.0.1:{port}"
    return "head-node", "Ray address head-node: Invalid address format"


def _one_error_line(capsys, expected: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lmroute: error: ") and expected in err[0], err


def test_score(tmp_path, capsys, address):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hello"}) + "\n")
    output = tmp_path / "scores.jsonl"
    argv = ["score", "--router", "length", "--input", str(prompts), "--output", str(output), "--quiet"]
    assert main([*argv, "--ray-address", address[0]]) == 1
    _one_error_line(capsys, address[1])
    assert not output.exists()


def test_label(tmp_path, capsys, address):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hello"}) + "\n")
    argv = ["label", "--prompts", str(prompts), "--mode", "judge", "--out", str(tmp_path / "run")]
    argv += ["--judge", f"name=judge,base_url={UPSTREAM}"]
    argv += ["--model", f"name=a,base_url={UPSTREAM}", "--model", f"name=b,base_url={UPSTREAM}"]
    assert main([*argv, "--quiet", "--ray-address", address[0]]) == 1
    _one_error_line(capsys, address[1])
    assert not (tmp_path / "run").exists()


def test_serve(tmp_path, capsys, address):
    argv = ["serve", "--routers", "length", "--port", str(free_port())]
    for tier in ("strong", "weak"):
        argv += [f"--{tier}-base-url", UPSTREAM, f"--{tier}-model", tier]
    assert main([*argv, "--ray-address", address[0]]) == 1
    _one_error_line(capsys, address[1])


@pytest.mark.parametrize("address", [None, "auto"])
def test_a_client_address_in_ray_address_is_left_to_ray(monkeypatch, address):
    from lmroute.cluster.connect import init_ray

    joined = []
    monkeypatch.setattr(ray, "init", lambda address, **options: joined.append(address))
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{free_port()}")
    init_ray(address)
    assert joined == [address]
