"""Fixtures of the reliability tests: a strong and a weak faulty upstream, shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faulty_upstream import FaultyUpstreams, running_upstreams


@pytest.fixture(scope="module")
def upstreams() -> Iterator[FaultyUpstreams]:
    """Two ``faulty_upstream.FaultyUpstream`` servers (``.strong``, ``.weak``, ``.urls``), running
    for the module and reset (answering ``ok``, no requests seen) before each test."""
    with running_upstreams() as pair:
        yield pair


@pytest.fixture(autouse=True)
def _fresh_upstreams(request: pytest.FixtureRequest) -> None:
    # Only tests that use the upstreams, directly or through a module fixture, start and reset them.
    if "upstreams" in request.fixturenames:
        request.getfixturevalue("upstreams").reset()
