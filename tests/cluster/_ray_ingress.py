"""lmroute's Ray Serve ingress built as Ray Serve builds it, its scorer handle a stand-in calling a
real ``Scorer`` in this process (no Ray cluster needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from lmroute.control.taps import EmbeddingSummaries
from lmroute.routers.base import Router
from lmroute.serving.app import worker_config_json
from lmroute.serving.config import ServeConfig

serve_module = pytest.importorskip("lmroute.cluster.serve")


class Response:
    def __init__(self, value):
        self.value = value

    def result(self, timeout_s=None):
        return self.value

    def __await__(self):
        yield from asyncio.sleep(0).__await__()
        return self.value


class Method:
    def __init__(self, call):
        self.call = call

    def remote(self, *args):
        return Response(self.call(*args))


class ScorerHandle:
    """Ray Serve's handle to a deployment, reduced to ``handle.method.remote(...).result()``."""

    def __init__(self, scorer):
        self._scorer = scorer

    def __getattr__(self, method):
        if method == "score":  # Ray Serve batches the calls; here each is a batch of its own
            return Method(lambda call: self._scorer._score_all([call])[0])
        found = getattr(self._scorer, method)
        if asyncio.iscoroutinefunction(found):
            return Method(lambda *args: asyncio.run(found(*args)))
        return Method(found)


def scorer_of(specs: list[str]) -> Any:
    """A ``Scorer`` of router specs (names or directories), as a scoring replica starts it."""
    scorer_class = serve_module.Scorer.func_or_class
    return scorer_class(specs, 64, 0.002)


def scorer_holding(routers: Mapping[str, Router]) -> Any:
    """A ``Scorer`` of router objects (which nothing loads, so none has its embedder tapped)."""
    scorer_class = serve_module.Scorer.func_or_class
    scorer = scorer_class.__new__(scorer_class)
    scorer.routers = dict(routers)
    scorer.summaries = EmbeddingSummaries()
    return scorer


def ingress_app(config: ServeConfig, scorer: Any, handle: type[ScorerHandle] = ScorerHandle) -> Any:
    """The app an ingress replica serves for ``config``, scoring through ``scorer`` (by ``handle``)."""
    # @serve.ingress subclasses the class it is given; that class holds lmroute's methods.
    wrapper = serve_module.Ingress.func_or_class
    ingress_class = next(c for c in wrapper.__mro__ if "__serve_build_asgi_app__" in c.__dict__)
    ingress = ingress_class.__new__(ingress_class)
    ingress_class.__init__(ingress, worker_config_json(config), handle(scorer), 0)
    return asyncio.run(ingress.__serve_build_asgi_app__())
