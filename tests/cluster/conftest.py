"""Fixtures of the Ray tests: a strong and a weak fake upstream, for the whole module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai import Upstreams, running_upstreams


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with running_upstreams() as pair:
        yield pair
