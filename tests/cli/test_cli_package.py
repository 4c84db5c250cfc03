"""The command line's structure: one module per command, a parser that loads no library code."""

import re
import subprocess
import sys

import pytest

import lmroute.cli
from lmroute.serving.chat import server_client

COMMANDS = [
    "eval",
    "score",
    "train",
    "onboard",
    "shrink",
    "experiment",
    "label",
    "data",
    "data pull",
    "serve",
    "calibrate",
    "replay",
    "chat",
    "routers",
]


def test_help_loads_no_library_code():
    code = (
        "import sys, lmroute; before = set(sys.modules); from lmroute.cli import build_parser; "
        "build_parser().format_help(); print(*sorted(set(sys.modules) - before))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    library = {m for m in loaded.split() if m.split(".")[0] in ("lmroute", "numpy", "torch")}
    outside = {m for m in library if not m.startswith("lmroute.cli")}
    assert outside <= {"lmroute._version", "lmroute.exceptions"}


def test_route_on_choices_and_default_are_the_library_s():
    from lmroute.cli.serve import ROUTE_ON
    from lmroute.data.conversations import DEFAULT_ROUTE_ON
    from lmroute.data.conversations import ROUTE_ON as LIBRARY

    assert ROUTE_ON == LIBRARY
    run = subprocess.run(
        [sys.executable, "-m", "lmroute.cli", "serve", "--help"], capture_output=True, text=True
    )
    assert f"(default {DEFAULT_ROUTE_ON};" in " ".join(run.stdout.split())


def test_each_command_has_its_module_in_help_order():
    parser = lmroute.cli.build_parser()
    assert re.findall(r"^    (\w+(?: \w+)?)\n?", parser.format_help(), flags=re.MULTILINE) == COMMANDS
    for name in COMMANDS:
        args = parser.parse_args([name, *_required(name)])
        assert args.func.__module__ == f"lmroute.cli.{name.replace(' ', '_')}"


def test_python_dash_m_runs_the_command():
    run = subprocess.run([sys.executable, "-m", "lmroute.cli", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("lmroute ")


def test_a_reader_that_stops_early_ends_the_command_without_a_traceback(tmp_path):
    # `lmroute score ... | head -1`: the write after head exited was a BrokenPipeError traceback.
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(20000)))  # more than a pipe holds
    argv = ["score", "--router", "length", "--input", str(prompts), "--quiet"]
    with subprocess.Popen(
        [sys.executable, "-m", "lmroute.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout.readline()
        process.stdout.close()
        err = process.stderr.read().decode()
    assert process.returncode == 141 and err == "", err


@pytest.mark.parametrize("url", ["http://127.0.0.1:6060", "http://127.0.0.1:6060/"])
def test_server_client_points_at_the_api_with_a_placeholder_key(url):
    with server_client(url) as client:
        assert str(client.base_url) == "http://127.0.0.1:6060/v1/" and client.api_key == "no-key"
    with server_client(url, api_key="k") as client:
        assert client.api_key == "k"


def _required(command: str) -> list[str]:
    """The fewest arguments each command parses with."""
    return {
        "eval": ["--benchmark", "mmlu"],
        "score": ["--router", "length", "--input", "p.txt"],
        "train": ["mf", "--data", "battles:b.jsonl", "--out", "out"],
        "onboard": ["--router", "mf", "--probe", "p.jsonl", "--model", "m", "--out", "out"],
        "shrink": ["--router", "mf", "--models", "a", "b", "--benchmark", "b.jsonl", "--out", "out"],
        "experiment": ["e.yaml"],
        "label": ["--prompts", "p.jsonl", "--model", "a", "--mode", "golden", "--out", "run"],
        "data": ["battles:b.jsonl"],
        "calibrate": ["--router", "length", "--strong-pct", "0.5"],
        "replay": ["--model", "router-length-share-0.3", "--prompts", "p.txt"],
        "chat": ["--model", "router-length-0.5"],
    }.get(command, [])


def test_chat_reads_the_variable_the_server_reads(monkeypatch):
    """Issue 21 item 9: the server read LMROUTE_API_KEYS and chat LMROUTE_API_KEY; now one name."""
    from lmroute.cli import chat
    from lmroute.serving.config import SERVER_KEYS_ENV

    used = {}

    class Client:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_client(url, *, api_key=None):
        used["key"] = api_key
        return Client()

    monkeypatch.setattr("lmroute.serving.chat.server_client", fake_client)
    monkeypatch.setattr("lmroute.serving.chat.run_chat", lambda client, **kw: 0)
    monkeypatch.setenv(SERVER_KEYS_ENV, "first-key, second-key")
    args = lmroute.cli.build_parser().parse_args(["chat", "--model", "router-length-0.5"])
    assert args.api_key_env == SERVER_KEYS_ENV
    assert chat.run(args) == 0 and used["key"] == "first-key"
    # An empty first entry ("$OLD,new" with $OLD unset) is no key to the server, which accepts "new";
    # chat sent none and every turn was refused with 401.
    monkeypatch.setenv(SERVER_KEYS_ENV, " , new-key")
    assert chat.run(args) == 0 and used["key"] == "new-key"
    monkeypatch.setenv(SERVER_KEYS_ENV, " ")
    assert chat.run(args) == 0 and used["key"] is None
