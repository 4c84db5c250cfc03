"""Fixtures of the serving tests: a strong and a weak fake upstream, shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai import Upstreams, running_upstreams


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    """Two ``fake_openai.FakeUpstream`` servers (``.strong``, ``.weak``, ``.urls``, ``.config()``),
    running for the module and reset (answering ``ok``, no requests seen) before each test."""
    with running_upstreams() as pair:
        yield pair


@pytest.fixture(autouse=True)
def _fresh_upstreams(request: pytest.FixtureRequest) -> None:
    # Only tests that use the upstreams, directly or through a module fixture, start and reset them.
    if "upstreams" in request.fixturenames:
        request.getfixturevalue("upstreams").reset()
