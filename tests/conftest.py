"""Shared fixtures: where the read-only data lives, and an isolated cache directory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_servers import LlamaServers, missing_requirements, running_servers
from public_data_server import PublicDataServer, serving_public_data

REPO = Path(__file__).resolve().parent.parent
#: Where every public download points during the tests: a closed port on loopback, so no test can
#: reach beyond this machine by accident (a test that means to download serves the files itself).
UNREACHABLE = "http://127.0.0.1:9/unreachable"


def pytest_configure(config):
    """Point every public download source at :data:`UNREACHABLE` unless the run sets it itself."""
    from lmroute.data.public import download_variables

    for name in download_variables():
        os.environ.setdefault(name, UNREACHABLE)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared read-only data (``LMROUTE_DATA_DIR`` or ``../shared/data`` beside the repo)."""
    path = Path(os.environ.get("LMROUTE_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "routellm-evals").is_dir():
        pytest.fail(f"shared data not found at {path}: set LMROUTE_DATA_DIR")
    return path


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh lmroute cache directory for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def llama_servers(tmp_path_factory) -> Iterator[LlamaServers]:
    """Two real llama.cpp servers on 127.0.0.1 serving SmolLM2-135M-Instruct: the strong and weak upstream.

    Yields ``LlamaServers`` (``tests/llama_servers.py``): ``.strong`` / ``.weak``, each with ``.model``
    (``smollm2-strong`` / ``smollm2-weak``) and ``.base_url`` (``http://127.0.0.1:PORT/v1``). Both are
    stopped at the end of the session. Without llama-cpp-python this fails under ``CI=true`` and skips
    elsewhere, so CI can never pass without running them.
    """
    reason = missing_requirements()
    if reason:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI must run the real LLM servers: {reason}", pytrace=False)
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:
        try:
            strong, weak = stack.enter_context(
                running_servers(["smollm2-strong", "smollm2-weak"], log_dir=tmp_path_factory.mktemp("llama"))
            )
        except RuntimeError as error:
            raise pytest.fail.Exception(str(error), pytrace=False) from None
        yield LlamaServers(strong=strong, weak=weak)


@pytest.fixture
def public_data(data_dir, tmp_path, monkeypatch) -> Iterator[PublicDataServer]:
    """The public sources on loopback (``tests/public_data_server.py``), lmroute's download
    variables pointing at them, no data folder set and a fresh cache: every public file a command
    reads is downloaded, and ``.requested`` lists which."""
    monkeypatch.delenv("LMROUTE_DATA_DIR", raising=False)
    monkeypatch.setenv("LMROUTE_CACHE_DIR", str(tmp_path / "cache"))
    with serving_public_data(data_dir, tmp_path / "www") as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        yield server
