"""Fixtures of the Ray tests: a strong and a weak fake upstream, for the whole module."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

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


@pytest.fixture
def ingress(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The ``options`` and constructor arguments (``bound``) ``build_application`` gives the ingress
    deployment, recorded by a stand-in (the ``deployment`` itself is not run)."""
    serve_module = pytest.importorskip("lmroute.cluster.serve")
    options: dict = {}
    bound: list = []

    class Ingress:
        @staticmethod
        def options(**given: object) -> type:
            options.update(given)
            return Ingress

        @staticmethod
        def bind(*args: object) -> str:
            bound.extend(args)
            return "the application"

    real = serve_module.Ingress
    monkeypatch.setattr(serve_module, "Ingress", Ingress)
    return SimpleNamespace(options=options, bound=bound, deployment=real)
