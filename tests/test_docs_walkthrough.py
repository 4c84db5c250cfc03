"""Every shell command and Python snippet in README.md and docs/*.md runs (issues 20 and 21).

Each doc runs block by block in a copy of the repository (``tests/docs_walkthrough.py`` says how
blocks are read, what stands in for hosted APIs and local model servers, and how a block is left
out with its reason). Every run is offline: the data folder is set and every download source points
at a closed port. Then each ``lmroute`` command of the README runs again without the data folder
and with an empty cache: it succeeds (it needs no public data) or fails with one line that says
what to pass, ``--data-dir``, a flag that command has.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from docs_walkthrough import (
    LANGUAGES,
    REPO,
    STAND_IN_FILES,
    URLS,
    Block,
    StandInModel,
    blocks,
    commands,
    copy_repository,
    exports,
    gsm8k_answers,
    make_stand_in_files,
    substitute,
)
from fake_openai import free_port, serve_in_thread
from serve_process import running_serve

from lmroute.data.public import download_variables

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
UNREACHABLE = "http://127.0.0.1:9/unreachable"
# A bound against hangs, not a speed check: with an empty embedding cache (a fresh machine) the
# README's retraining block embeds its 17,332 training prompts first: 515 s on 2 idle cores.
STEP_TIMEOUT = 1800
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")

pytestmark = pytest.mark.network_loopback


@pytest.fixture(scope="module")
def stand_ins(data_dir):
    """The stand-in models of :data:`docs_walkthrough.URLS`, by role."""
    answers = gsm8k_answers(data_dir)
    strong, weak = StandInModel("strong", answers), StandInModel("weak", answers)
    with serve_in_thread(strong.app()) as strong_url, serve_in_thread(weak.app()) as weak_url:
        yield {"strong": f"{strong_url}/v1", "weak": f"{weak_url}/v1"}


@pytest.fixture(scope="module")
def overlay_venv(tmp_path_factory) -> Path:
    """A throwaway virtual environment that sees this one's packages, for ``scripts/main.sh``: its
    installs go into the throwaway, and what is installed here already is not fetched again."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    here = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "zz-walkthrough.pth").write_text("".join(f"{p}\n" for p in here))
    return venv


def base_env(**changes: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OPENAI_API_KEY": "stand-in-key",  # the docs' hosted models name this variable
        "LMROUTE_API_KEYS": "",
        # scripts/main.sh's installs use what this machine has: a test never reaches beyond loopback.
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads it backwards: "0" builds with setuptools from here
        **{name: UNREACHABLE for name in download_variables()},
    }
    env.update(changes)
    return env


def run(command: list[str], *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def help_flags(command: str, env: dict[str, str], cwd: Path) -> set[str]:
    two_words = command.startswith(("lmroute data pull", "lmroute data similarity"))
    words = command.split()[:3] if two_words else command.split()[:2]
    return set(_FLAG.findall(run([*words, "--help"], env=env, cwd=cwd).stdout))


def check_synopsis(code: str, env: dict[str, str], cwd: Path, where: str) -> None:
    """A ``text`` block's ``lmroute CMD ...`` lines name only flags CMD has."""
    for line in commands(code):
        match = re.match(r"lmroute (data pull|data similarity|[a-z]+)\b", line)
        if match:
            known = help_flags(line, env, cwd)
            missing = [f for f in _FLAG.findall(line) if f not in known]
            assert not missing, f"{where}: lmroute {match.group(1)} has no {missing}: {line}"


def is_server(code: str) -> bool:
    lines = commands(code)
    return len(lines) == 1 and lines[0].startswith("lmroute serve")


def run_block(block: Block, code: str, *, env: dict[str, str], cwd: Path, scratch: Path) -> None:
    """Run a ``bash`` or ``python`` block as written: it exits 0 and prints no error."""
    assert not (block.language == "bash" and code.rstrip().endswith("&")), (
        f"{block.where}: starts servers in the background; skip it with a reason (stand-ins answer for them)"
    )
    script = scratch / f"block-{block.line}.{'sh' if block.language == 'bash' else 'py'}"
    script.write_text(code)
    interpreter = ["bash", "-e"] if block.language == "bash" else [sys.executable]
    start = time.monotonic()
    result = run([*interpreter, str(script)], env=env, cwd=cwd)
    print(f"{block.where}: {time.monotonic() - start:.1f} s")
    output = f"{code}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"{block.where} failed:\n{output}"
    # lmroute chat goes on after a failed turn, printing "error: ..."; a traceback is never right.
    failed = re.search(r"^error: .*|Traceback \(most recent call last\)", result.stdout + result.stderr, re.M)
    assert not failed, f"{block.where} printed {failed.group(0)!r}:\n{output}"


def check_without_data(block: Block, code: str, *, env: dict[str, str], cwd: Path) -> None:
    """Each ``lmroute`` command of a block, with no data folder and an empty cache (``env``), succeeds
    or fails with one line that names ``--data-dir``, a flag that command has."""
    for command in commands(code):
        if not command.startswith("lmroute ") or command.startswith("lmroute serve"):
            continue
        result = run(["bash", "-c", command], env=env, cwd=cwd)
        if result.returncode == 0:
            continue
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, (
            f"{block.where}: with no data folder `{command}` must pass or fail in one line:\n{result.stderr}"
        )
        assert lines[0].startswith("lmroute: error: ") and "--data-dir" in lines[0], lines[0]
        assert "--data-dir" in help_flags(command, env, cwd), f"{command} suggests a flag it lacks"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_block_runs(doc, data_dir, stand_ins, overlay_venv, tmp_path):
    work = copy_repository(tmp_path / "repo")
    make_stand_in_files(work, data_dir)
    port = free_port()
    env = base_env(
        PYTHONPATH=str(work / "src"), LMROUTE_DATA_DIR=str(data_dir), LMROUTE_VENV=str(overlay_venv)
    )
    skipped, ran = [], []
    with contextlib.ExitStack() as stack:
        for block in blocks(doc):
            assert block.language in LANGUAGES, f"{block.where}: name its language ({', '.join(LANGUAGES)})"
            if block.skip:
                skipped.append(f"{block.where}: {block.skip}")
                continue
            code = substitute(block.code, stand_ins, port)
            variables = exports(code) if block.language == "bash" else None
            if variables is not None:
                env.update(variables)
            elif block.language == "bash" and is_server(code):
                script = tmp_path / f"serve-{block.line}.sh"
                script.write_text(code)
                command = ["bash", "-e", str(script)]
                logs = tmp_path / "logs"
                stack.enter_context(
                    running_serve(
                        lambda _, c=command: c,
                        env=env,
                        log_dir=logs,
                        cwd=work,
                        port=port,
                        timeout=STEP_TIMEOUT,
                    )
                )
            elif block.language in ("bash", "python"):
                run_block(block, code, env=env, cwd=work, scratch=tmp_path)
            elif block.language == "yaml":
                assert yaml.safe_load(code) is not None, f"{block.where}: empty yaml"
                name = re.match(r"#\s*([\w.-]+\.ya?ml)\s*$", code.splitlines()[0])
                if name:
                    (work / name.group(1)).write_text(code)
            elif block.language == "json":
                json.loads(code)
            else:
                check_synopsis(block.code, env, work, block.where)
            ran.append(block.where)
        print(f"{doc.name}: ran {len(ran)} blocks; left out {len(skipped)}:", *skipped, sep="\n  ")

        if doc.name != "README.md":
            return
        # Issue 20: without the data folder (and with an empty cache), each README command succeeds
        # or says what to pass.
        bare = {**env, "LMROUTE_CACHE_DIR": str(tmp_path / "empty-cache")}
        bare.pop("LMROUTE_DATA_DIR")
        for block in blocks(doc):
            if block.language == "bash" and not block.skip:
                check_without_data(block, substitute(block.code, stand_ins, port), env=bare, cwd=work)


def test_the_stand_ins_are_documented():
    """What stands in for what is said in one place, and every doc block says its language."""
    assert set(URLS.values()) == {"strong", "weak"} and all(STAND_IN_FILES.values())
    untagged = [b.where for doc in DOCS for b in blocks(doc) if b.language not in LANGUAGES]
    assert not untagged, f"blocks without a language: {untagged}"
