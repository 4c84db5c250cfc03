"""Shared fixtures: where the read-only data lives, and an isolated cache directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
