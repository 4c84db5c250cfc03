"""Shared fixtures: where the read-only data lives, and an isolated cache directory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_servers import LlamaServers, missing_requirements, running_servers

REPO = Path(__file__).resolve().parent.parent


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
