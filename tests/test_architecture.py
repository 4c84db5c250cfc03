"""The import contract of docs/architecture.md, checked with import-linter on every test run.

The contract lives in pyproject.toml ([tool.importlinter]): layers that import only downwards, and no
package whose children import each other in a circle. The last two tests prove the check can fail: an
upward import and a circle planted in a copy of the package each break it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
# what the lint-imports script runs, with the interpreter of this test run
_LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the package under ``root/src`` with ``root/pyproject.toml``."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [sys.executable, "-c", _LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=300,
    )


def test_the_package_keeps_its_import_contract():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.fixture
def package_copy(tmp_path) -> Path:
    shutil.copytree(REPO / "src" / "lmroute", tmp_path / "src" / "lmroute")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(root: Path, module: str, line: str) -> None:
    path = root / "src" / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text("utf-8") + f"\n\ndef _planted():\n    {line}\n", "utf-8")


def test_an_upward_import_breaks_the_contract(package_copy):
    plant(package_copy, "lmroute.training.mf", "import lmroute.routers.mf")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "Layers: each imports only downwards BROKEN" in result.stdout
    assert "lmroute.training.mf -> lmroute.routers.mf" in result.stdout


def test_a_circle_breaks_the_contract(package_copy):
    # data.battles is imported by data.sources; importing back closes a circle inside one layer
    plant(package_copy, "lmroute.data.battles", "import lmroute.data.sources")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "No import circles BROKEN" in result.stdout


def contract_layers() -> list[str]:
    """The layers of pyproject.toml's layers contract, top first."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    return next(c["layers"] for c in contracts if c["type"] == "layers")


def test_every_module_is_in_a_layer():
    """A module outside every layer escapes the contract: nothing checks what it imports or who imports it."""
    layered = {name.strip() for layer in contract_layers() for name in layer.split("|")}
    package = REPO / "src" / "lmroute"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert modules - layered == set(), "add these to [tool.importlinter]'s layers and docs/architecture.md"


def test_the_documented_layers_are_the_contract():
    """docs/architecture.md draws the layers of pyproject.toml's contract, in its order."""
    text = (REPO / "docs" / "architecture.md").read_text("utf-8")
    drawing = re.search(r"^```text\n(.*?)^```", text, re.S | re.M)
    assert drawing, "docs/architecture.md has no ```text drawing of the layers"
    # a layer's line starts at the margin; its description follows two or more spaces, and wraps
    drawn = [re.split(r"\s{2,}", line)[0] for line in drawing.group(1).splitlines() if line[:1].strip()]
    assert drawn == contract_layers()
