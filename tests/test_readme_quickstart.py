"""The README quickstart runs as written against the two local llama.cpp servers.

The fenced blocks between ``<!-- quickstart:start -->`` and ``<!-- quickstart:end -->`` are taken from
README.md and run in order, in a fresh folder: the first block (the settings a user edits: ``export``
lines only) is replaced by the test's own values for the same variables, every other ``bash`` block runs
through bash (the one with ``lmroute serve`` in the background until the end), every ``python`` block
through this venv's python. Arena-Hard, which ``lmroute calibrate`` downloads, is served on loopback
from the shared data.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from contextlib import ExitStack
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from llama_servers import HOST, free_port
from serve_process import get_text, metric_value, running_serve

REPO = Path(__file__).resolve().parent.parent
#: The router the quickstart uses (switch to "mf" once the shipped checkpoint exists).
ROUTER = "length"
SETTINGS = {"STRONG_BASE_URL", "STRONG_MODEL", "WEAK_BASE_URL", "WEAK_MODEL", "LMROUTE_PORT"}
STEP_TIMEOUT = 180


def quickstart_blocks(readme: Path = REPO / "README.md") -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README's quickstart section, in order."""
    text = readme.read_text("utf-8")
    section = re.search(r"<!-- quickstart:start -->\n(.*?)<!-- quickstart:end -->", text, re.S)
    assert section, "README.md has no <!-- quickstart:start --> ... <!-- quickstart:end --> section"
    return re.findall(r"^```(\w*)\n(.*?)^```$", section.group(1), re.S | re.M)


def exported_names(code: str) -> set[str]:
    """The variables a block of ``export NAME=value ...`` lines sets; fails on anything else."""
    names = set()
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[0] == "export", f"the settings block should only export variables: {line!r}"
        for word in words[1:]:
            name, sep, _ = word.partition("=")
            assert sep and name.isidentifier(), f"not NAME=value: {word!r}"
            names.add(name)
    return names


def test_quickstart_section_shape():
    blocks = quickstart_blocks()
    assert [lang for lang, _ in blocks] == ["bash", "bash", "python", "bash", "python"]
    assert exported_names(blocks[0][1]) == SETTINGS
    code = "\n".join(code for _, code in blocks)
    assert f"lmroute calibrate --router {ROUTER} --strong-pct 0.5" in code
    assert f'routers=["{ROUTER}"]' in code and f"lmroute serve --routers {ROUTER}" in code
    # the model names are the calibrated one (the JSON's positional "router-<name>-<threshold>")
    assert code.count('json.loads(Path("calibration.json").read_text())["model"]') == 2
    assert "stream=True" in code and "from openai import OpenAI" in code


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def arena_hard_url(data_dir, tmp_path):
    """The shared Arena-Hard questions on loopback, as arena-hard-auto's ``question.jsonl``."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "question.jsonl").write_bytes((data_dir / "arena-hard" / "questions.jsonl").read_bytes())
    server = ThreadingHTTPServer((HOST, 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_step(language: str, code: str, *, env: dict[str, str], cwd: Path, index: int) -> str:
    """Run one block as written; its stdout."""
    path = cwd / f"step{index}.{'sh' if language == 'bash' else 'py'}"
    path.write_text(code)
    command = ["bash", "-e", str(path)] if language == "bash" else [sys.executable, str(path)]
    result = subprocess.run(
        command,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"quickstart step {index} failed:\n{code}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def check_routed(output: str, threshold: float) -> None:
    """The ``print(response.model, response.lmroute)`` line agrees with the threshold; an answer follows."""
    match = re.search(r"^(smollm2-\w+) (\{.*\})$", output, re.M)
    assert match, f"no '<model> {{routing info}}' line in:\n{output}"
    model, info = match.group(1), ast.literal_eval(match.group(2))
    expected = "strong" if info["score"] >= threshold else "weak"
    assert info["router"] == ROUTER and info["threshold"] == threshold
    assert info["decision"] == expected and info["fallback"] is False
    assert model == info["model"] == f"smollm2-{expected}"
    assert output[match.end() :].strip(), f"no answer printed:\n{output}"


@pytest.mark.llm
@pytest.mark.network_loopback
def test_readme_quickstart_runs_verbatim(llama_servers, arena_hard_url, tmp_path):
    blocks = quickstart_blocks()
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "STRONG_BASE_URL": llama_servers.strong.base_url,
        "STRONG_MODEL": llama_servers.strong.model,
        "WEAK_BASE_URL": llama_servers.weak.base_url,
        "WEAK_MODEL": llama_servers.weak.model,
        "LMROUTE_PORT": str(free_port()),
        # The strong llama server ignores keys; the quickstart names this variable for a real strong model.
        "OPENAI_API_KEY": "unused-by-llama",
        "LMROUTE_PROMPTS_URL": arena_hard_url,
        "LMROUTE_CACHE_DIR": str(tmp_path / "cache"),
        "LMROUTE_API_KEYS": "",
    }
    assert exported_names(blocks[0][1]) <= env.keys()
    outputs = []
    with ExitStack() as stack:
        server = None
        for index, (language, code) in enumerate(blocks[1:], start=1):
            if language == "bash" and "lmroute serve" in code:
                path = work / f"step{index}.sh"
                path.write_text(code)
                server = stack.enter_context(
                    running_serve(
                        lambda port, path=path: ["bash", "-e", str(path)],
                        env=env,
                        log_dir=tmp_path / "logs",
                        cwd=work,
                        port=int(env["LMROUTE_PORT"]),
                    )
                )
                env["LMROUTE_PORT"] = str(server.port)  # a new port only if another process took the first
                outputs.append("")
                continue
            outputs.append(run_step(language, code, env=env, cwd=work, index=index))
        assert server is not None, "the quickstart never starts lmroute serve"
        metrics = get_text(f"{server.url}/metrics")

    calibration = json.loads((work / "calibration.json").read_text())
    threshold = calibration["threshold"]
    assert calibration["router"] == ROUTER and calibration["n_prompts"] == 500
    assert abs(calibration["achieved_share"] - 0.5) < 0.01
    calibrate_out, controller_out, _, client_out = outputs
    assert f"model: router-{ROUTER}-{threshold}" in calibrate_out
    check_routed(controller_out, threshold)
    check_routed(client_out, threshold)
    # The plain and the streamed request both went through lmroute serve and were answered (what a stream
    # delivers, and when, is checked in test_e2e_serving.py).
    served = metric_value(metrics, "lmroute_requests_total", endpoint="chat", router=ROUTER, status="200")
    assert served == 2, metrics
