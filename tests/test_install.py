"""Issue 21 item 1: the documented install of torch names PyTorch's CPU index, and the scripts still
install here (this machine has the CPU wheel where pip finds it without an index; PyTorch's index
is unreachable from it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import tomllib

from lmroute._extras import INSTALL, TORCH_CPU_INDEX, TORCH_VERSION

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "install-torch.sh"
CONVENTIONAL = f"pip install torch=={TORCH_VERSION} --index-url {TORCH_CPU_INDEX}"


def test_the_documented_commands_name_the_cpu_index():
    readme = REPO / "README.md"
    install = readme.read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    assert CONVENTIONAL in install and "scripts/install-torch.sh" in install
    assert TORCH_CPU_INDEX == "https://download.pytorch.org/whl/cpu"
    assert CONVENTIONAL in INSTALL["torch"] and CONVENTIONAL in INSTALL["embed-torch"]
    script = SCRIPT.read_text()
    assert f'CPU_INDEX="{TORCH_CPU_INDEX}"' in script and f'VERSION="{TORCH_VERSION}"' in script
    # No other script or doc installs torch without the CPU index (PyPI's would be the CUDA build).
    texts = {
        p: p.read_text()
        for p in [*REPO.glob("scripts/*.sh"), *REPO.glob(".ci/*"), readme, *REPO.glob("docs/*.md")]
    }
    for path, text in texts.items():
        for line in re.findall(r"^.*pip install[^\n]*\btorch==[^\n]*$", text, re.M):
            assert "--index-url" in line or path == SCRIPT, f"{path.name}: {line.strip()}"
    assert "bash scripts/install-torch.sh" in (REPO / "scripts" / "test.sh").read_text()


def run_script(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "PIP_DRY_RUN": "1", "PIP_RETRIES": "0", "PIP_TIMEOUT": "5", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_script_installs_here_without_asking_an_index():
    # The index is unreachable: were it asked, pip would fail.
    run = run_script(PYTHON=sys.executable, LMROUTE_TORCH_INDEX="http://127.0.0.1:9/unreachable")
    assert run.returncode == 0, run.stderr
    assert f"torch {TORCH_VERSION}+cpu is installed, or found without an index" in run.stderr


class _Index(SimpleHTTPRequestHandler):
    asked: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).asked.append(self.path)
        self.send_error(404)

    def log_message(self, format, *args):
        pass


@pytest.mark.network_loopback
def test_without_a_local_wheel_the_script_asks_the_cpu_index(tmp_path):
    """In a fresh venv with no wheelhouse, torch is asked of LMROUTE_TORCH_INDEX (a loopback
    stand-in for PyTorch's CPU index, whose default the first test checks)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # pip from ensurepip, offline
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Index, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/simple"
        run = run_script(
            PYTHON=str(venv / "bin" / "python"),
            LMROUTE_TORCH_INDEX=index,
            PIP_CONFIG_FILE=os.devnull,  # no wheelhouse, no other index
            PIP_FIND_LINKS="",
            PIP_EXTRA_INDEX_URL="",
            PIP_CONSTRAINT="",
        )
    finally:
        server.shutdown()
        server.server_close()
    assert f"torch {TORCH_VERSION} (CPU) from {index}" in run.stderr, run.stderr
    assert "/simple/torch/" in _Index.asked


def test_every_extra_is_in_the_install_section():
    """The README's install lines name every extra a user may need (a missing one is otherwise met
    only as an error line), and every extra the error lines name exists."""
    install = (REPO / "README.md").read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    documented = set(re.findall(r"pip install -e '\.\[([\w-]+)\]'", install))
    assert documented == set(extras) - {"test"}
    assert set(INSTALL) <= set(extras)
