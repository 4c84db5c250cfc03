"""Fixtures of the Ray tests: a strong and a weak fake upstream, for the whole module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai import Upstreams, running_upstreams


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with running_upstreams() as pair:
        yield pair


@pytest.fixture
def ray_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ray.init`` fails the test: the command must stop at its own check, before Ray starts
    (for an address where no cluster answers, ``ray.init`` would retry for many minutes)."""
    ray = pytest.importorskip("ray")

    def init(*args: object, **kwargs: object) -> None:
        raise AssertionError("ray.init was called: the command should have stopped before Ray starts")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
