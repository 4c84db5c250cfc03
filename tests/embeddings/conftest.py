"""Fixtures shared by the MiniLM test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def shared_onnx_cache(tmp_path_factory):
    """One cache folder per module, so each ONNX file is built once there (tests that need a fresh
    one take the ``cache_dir`` fixture, which overrides this)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LMROUTE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()
