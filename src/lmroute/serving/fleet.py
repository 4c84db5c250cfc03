"""Routing among N priced upstreams: the ``models:`` section of a serving config and its calls.

A serving config may list any number of models, each an upstream (base URL, model, the name of its
key's variable) with a serving name, the router-vocabulary model it is, and its list prices::

    models:
      - name: frontier                     # serving name (default: the model)
        base_url: https://api.openai.com/v1
        model: gpt-4o-2024-08-06
        api_key_env: OPENAI_API_KEY
        price: {input_per_1m: 2.5, output_per_1m: 10.0, output_tokens: 300}
      - name: local
        base_url: http://127.0.0.1:8080/v1
        model: llama-3.1-8b
        vocabulary: llama-3.1-8b-instruct  # the router's name for it (default: the serving name)
        price: {input_per_1m: 0.0, output_per_1m: 0.0}

``router-<router>-lambda-<value>`` and ``router-<router>-quality-<value>`` (:mod:`lmroute.routing_names`)
route among them: the router predicts each model's quality on the prompt (one embedding, however
many models), the catalogue estimates each one's cost on the request's input tokens (every message,
as the model reads them all, not only the routing text), and the policy (:mod:`lmroute.policies`)
ranks them; the first is called, and when it fails the policy's next choice. A config without
``strong``/``weak`` takes its dearest model as the strong one and its cheapest as the weak one, so
``router-<router>-<threshold>`` keeps routing between two of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import Field, ValidationError, model_validator

from lmroute._yaml import validation_problems
from lmroute.catalogue import Catalogue, CatalogueModel
from lmroute.exceptions import (
    ConfigError,
    InvalidModelNameError,
    RouterFailedError,
    UpstreamError,
)
from lmroute.policies import POLICIES, ranked
from lmroute.pricing import Price, reported_tokens
from lmroute.routers.base import Router
from lmroute.routing_names import RouterSpec
from lmroute.serving.metrics import ServingMetrics
from lmroute.upstream import (
    CircuitBreaker,
    ClientFactory,
    Upstream,
    UpstreamConfig,
    content_text,
    failure_kind,
)
from lmroute.upstream import should_fall_back as _should_fall_back

log = logging.getLogger("lmroute.serving")
_T = TypeVar("_T")
#: Prompt tokens of the request on which "dearest" and "cheapest" model are judged.
_TYPICAL_PROMPT_TOKENS = 100.0


class FleetModel(UpstreamConfig):
    """One of the N models: an upstream with a serving name, its vocabulary name and its price."""

    #: The name requests and answers use for it (default: ``model``).
    name: str = Field(min_length=1)
    #: The router-vocabulary model it is (default: ``name``); ``lmroute onboard`` teaches a new one.
    vocabulary: str = Field(min_length=1)
    price: Price

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        data = dict(value)
        data.setdefault("name", data.get("model"))
        data.setdefault("vocabulary", data.get("name"))
        if data.get("price") is None:
            raise ValueError(
                f"model {data.get('name')!r} has no price: add price: {{input_per_1m: ..., "
                "output_per_1m: ...} (USD per million tokens; 0 for a model you host)"
            )
        return data


def fleet_models(models: Sequence[Any]) -> tuple[FleetModel, ...]:
    """``models`` as FleetModels; ConfigError for fewer than two or a serving name used twice."""
    if not isinstance(models, (list, tuple)):
        raise ConfigError("models: a list of models, each with base_url, model and price")
    parsed = tuple(_parse(i, m) for i, m in enumerate(models))
    if len(parsed) < 2:
        raise ConfigError(f"models: route among at least two models, got {len(parsed)}")
    names = [m.name for m in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"models: serving name(s) used twice: {', '.join(repeated)}")
    return parsed


def _parse(index: int, model: Any) -> FleetModel:
    if isinstance(model, FleetModel):
        return model
    try:
        return FleetModel.model_validate(model)
    except ValidationError as exc:
        name = model.get("name") or model.get("model") if isinstance(model, Mapping) else None
        problems = validation_problems(exc, root="model")
        raise ConfigError(f"models[{index}]{f' ({name})' if name else ''}: {problems}") from None


def check_vocabulary(models: Sequence[FleetModel], routers: Mapping[str, Router]) -> None:
    """ConfigError when a router that knows models (mf, sw_ranking) does not know every one of
    ``models``: the error lists its vocabulary and names the onboarding command; or when its
    quality shrinkage (``lmroute shrink``) was not fitted on all of them."""
    for name, router in routers.items():
        known = set(router.vocabulary)
        unknown = [m.vocabulary for m in models if known and m.vocabulary not in known]
        if unknown:
            raise ConfigError(
                f"router {name!r} cannot route among the configured models: {', '.join(map(repr, unknown))} "
                f"not in its vocabulary ({len(known)} models: {', '.join(router.vocabulary)}); set a "
                "model's vocabulary: to one of them, or teach the router the new model from a probe "
                "file: lmroute onboard --router ROUTER --probe FILE --model NAME --out DIR"
            )
        if router.quality_shrinkage is not None:
            try:
                router.quality_shrinkage.select([m.vocabulary for m in models])
            except ConfigError as exc:
                raise ConfigError(f"router {name!r} cannot route among the configured models: {exc}") from exc


def dearest_and_cheapest(models: Sequence[FleetModel]) -> tuple[FleetModel, FleetModel]:
    """The strong and weak model of a config that names only N models (ties: the earlier one), two
    different models even when every one costs the same."""
    costs = [m.price.request_cost(_TYPICAL_PROMPT_TOKENS) for m in models]
    strong = max(range(len(models)), key=lambda i: (costs[i], -i))
    # Not the strong one again: with equal prices (two models you host, at 0) every request would
    # go to one model whatever the router said, and fall back to itself.
    weak = min((i for i in range(len(models)) if i != strong), key=lambda i: (costs[i], i))
    return models[strong], models[weak]


@dataclass(frozen=True)
class Candidate:
    """One model's predicted quality (None when the router failed) and estimated cost (USD)."""

    name: str
    quality: float | None
    cost: float

    def info(self) -> dict[str, Any]:
        return {"model": self.name, "predicted_quality": self.quality, "estimated_cost_usd": self.cost}


@dataclass(frozen=True)
class FleetDecision:
    """Where a request routed among N models goes: ``order`` is the policy's ranking, chosen first
    (the fallbacks follow it); ``candidates`` every model, in config order. A model asked for by
    name has no router, mode, value or candidates, and no fallback."""

    router: str | None
    mode: str | None
    value: float | None
    order: tuple[str, ...]
    candidates: tuple[Candidate, ...] = ()

    @property
    def model(self) -> str:
        """The chosen model's serving name."""
        return self.order[0]

    @property
    def tier(self) -> str:
        """The chosen model (the ``x-lmroute-decision`` header of a two-model decision's tier)."""
        return self.order[0]

    @property
    def threshold(self) -> None:
        return None

    @property
    def score(self) -> float | None:
        """The chosen model's predicted quality."""
        return next((c.quality for c in self.candidates if c.name == self.model), None)

    def info(self, *, answered_by: str | None, fallback: bool) -> dict[str, Any]:
        """The ``lmroute`` object added to answers (``answered_by`` None: a decision without a call)."""
        info: dict[str, Any] = {
            "router": self.router,
            "mode": self.mode,
            "value": self.value,
            "decision": self.model,
            "routed_model": self.model,
            "candidates": [c.info() for c in self.candidates],
            "fallback_order": list(self.order[1:]),
        }
        if answered_by is not None:
            info.update(model=answered_by, fallback=fallback)
        return info


class SpendCounters:
    """Prometheus counters of answered requests and their estimated spend, by model.

    The spend counter exists only when some model has a price (``priced``), so that a server
    without prices exports no spend rather than a spend of zero (the web console's spend tile
    then says "not exported")."""

    def __init__(self, registry: Any, *, priced: bool = True) -> None:
        from prometheus_client import Counter

        self.requests = Counter(
            "lmroute_model_requests", "Answered requests by model", ["model"], registry=registry
        )
        self.spend = (
            Counter(
                "lmroute_estimated_spend_usd",
                "Estimated spend by model in USD: the answer's token usage at list prices (the "
                "expected answer length where an answer reports no usage, as streams)",
                ["model"],
                registry=registry,
            )
            if priced
            else None
        )

    def count(
        self, model: str, price: Price | None, payload: Mapping[str, Any], body: Mapping[str, Any] | None
    ) -> None:
        """One answer of ``model`` to the request ``payload``; its spend when its price is known."""
        self.requests.labels(model).inc()
        if price is not None and self.spend is not None:
            self.spend.labels(model).inc(request_spend(price, payload, body))


def request_spend(price: Price, payload: Mapping[str, Any], body: Mapping[str, Any] | None) -> float:
    """USD of one answer: its reported token usage at ``price``, else the estimate from the
    request's message text and the model's expected answer length."""
    from lmroute.pricing import estimate_tokens

    usage = body.get("usage") if body is not None else None
    if isinstance(usage, Mapping):
        tokens_in, tokens_out = (
            reported_tokens(usage.get("prompt_tokens")),
            reported_tokens(usage.get("completion_tokens")),
        )
        if tokens_in is not None and tokens_out is not None:
            return (tokens_in * price.input_per_1m + tokens_out * price.output_per_1m) / 1e6
    messages = payload.get("messages")
    # a multi-part message is paid for too
    text = "".join(content_text(m.get("content")) for m in messages or () if isinstance(m, Mapping))
    return price.request_cost(estimate_tokens(text))


class Fleet:
    """The N models of a config: their catalogue, one upstream each, and the policy's ranking."""

    def __init__(
        self,
        models: Sequence[FleetModel],
        upstreams: Mapping[str, Upstream],
        *,
        fallback: bool = True,
        metrics: ServingMetrics | None = None,
    ):
        self.models = fleet_models(models)
        self.metrics = metrics
        self.catalogue = Catalogue([CatalogueModel(m.name, m.vocabulary, m.price) for m in self.models])
        self.upstreams = dict(upstreams)
        self.fallback = fallback
        self._prices = {m.name: m.price for m in self.models}

    @classmethod
    def from_models(
        cls,
        models: Sequence[FleetModel],
        factory: ClientFactory,
        *,
        metrics: ServingMetrics | None = None,
        fallback: bool = True,
        circuit_breaker: float = 0.0,
    ) -> Fleet:
        """A fleet whose upstream clients come from ``factory``, reporting to ``metrics``; a model
        that failed is skipped for ``circuit_breaker`` seconds (0: never), as the two tiers are."""
        upstreams = {
            m.name: Upstream(m, factory(m), observer=metrics, breaker=CircuitBreaker(circuit_breaker))
            for m in models
        }
        return cls(models, upstreams, fallback=fallback, metrics=metrics)

    def price(self, name: str) -> Price | None:
        """The price of a model by serving name, None for one not in the fleet."""
        return self._prices.get(name)

    def check_router(self, name: str, router: Router) -> None:
        """InvalidModelNameError when ``router`` predicts no per-model quality (the N-model modes
        need a router with a vocabulary: mf, sw_ranking)."""
        if not router.vocabulary:
            raise InvalidModelNameError(
                f"router {name!r} scores only two models; the modes {', '.join(POLICIES)} route among N "
                "models and need a router that predicts each model's quality (mf or sw_ranking)"
            )

    def named(self, model: str) -> FleetDecision | None:
        """The decision for a model asked for by serving or upstream name; None for no such model."""
        for m in self.models:
            if model in (m.name, m.model):
                return FleetDecision(router=None, mode=None, value=None, order=(m.name,))
        return None

    def decide(
        self, name: str, router: Router, spec: RouterSpec, prompt: str, tokens: float
    ) -> FleetDecision:
        """Rank the models for ``prompt`` (the routing text) of a request of ``tokens`` input tokens
        by ``spec``'s policy (blocking: run it off the event loop)."""
        quality = self.catalogue.predict_quality(router, [prompt])
        cost = self.catalogue.costs_of_tokens([tokens])
        order = ranked(spec.mode, quality, cost, spec.value)[0]
        return FleetDecision(
            router=name,
            mode=spec.mode,
            value=spec.value,
            order=tuple(self.catalogue.names[i] for i in order),
            candidates=self._candidates(quality[0], cost[0]),
        )

    async def decide_async(
        self,
        spec: RouterSpec,
        router: Router,
        prompt: str,
        tokens: float,
        executor: Executor,
        *,
        on_failure: Literal["strong", "weak"] | None = None,
    ) -> FleetDecision:
        """:meth:`decide` in ``executor``. When the router raises, RouterFailedError, or with
        ``on_failure`` every model by price: ``strong`` the dearest first, ``weak`` the cheapest."""
        start = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            decision = await loop.run_in_executor(
                executor, self.decide, spec.router, router, spec, prompt, tokens
            )
        except Exception as exc:  # as for two models: the request goes on without the router
            if self.metrics is not None:
                self.metrics.router_errors.labels(spec.router).inc()
            log.warning("router %s failed: %s: %s", spec.router, type(exc).__name__, exc)
            if on_failure is None:
                raise RouterFailedError(
                    f"router {spec.router!r} failed to predict the models' quality ({type(exc).__name__}); "
                    "see the server log"
                ) from exc
            return self.by_price(spec.router, spec, tokens, dearest_first=on_failure == "strong")
        if self.metrics is not None:
            self.metrics.routing_latency.labels(spec.router).observe(time.perf_counter() - start)
        return decision

    def by_price(self, name: str, spec: RouterSpec, tokens: float, *, dearest_first: bool) -> FleetDecision:
        """The decision when the router failed: every model by estimated cost on a request of
        ``tokens`` input tokens, no qualities."""
        cost = self.catalogue.costs_of_tokens([tokens])[0]
        order = np.argsort(-cost if dearest_first else cost, kind="stable")
        return FleetDecision(
            router=name,
            mode=spec.mode,
            value=spec.value,
            order=tuple(self.catalogue.names[i] for i in order),
            candidates=self._candidates(None, cost),
        )

    def _candidates(self, quality: np.ndarray | None, cost: np.ndarray) -> tuple[Candidate, ...]:
        return tuple(
            Candidate(name, None if quality is None else float(quality[i]), float(cost[i]) / 1e3)
            for i, name in enumerate(self.catalogue.names)
        )

    async def call(
        self,
        decision: FleetDecision,
        call: Callable[[Upstream], Awaitable[_T]],
    ) -> tuple[str, bool, _T]:
        """``call`` on the chosen model's upstream; when it fails (and fallback is on), on the
        policy's next choice, and so on. Returns who answered, whether by fallback, and the result."""
        errors: list[tuple[str, str]] = []  # each failure, as logged and as a client is told
        for i, name in enumerate(decision.order):
            upstream = self.upstreams[name]
            try:
                return name, i > 0, await call(upstream)
            except UpstreamError as exc:
                errors.append((f"{name}: {exc}", f"{name}: {exc.client_message}"))
                last = i + 1 == len(decision.order)
                if not (self.fallback and _should_fall_back(exc)) or last:
                    if len(errors) == 1:
                        raise
                    raise exc.restated(
                        "; ".join(logged for logged, _ in errors),
                        public="; ".join(told for _, told in errors),
                    ) from exc
                following = decision.order[i + 1]
                log.warning("model %s failed (%s); falling back to %s", name, exc, following)
                if self.metrics is not None:
                    to_model = self.upstreams[following].model
                    self.metrics.fallbacks.labels(upstream.model, to_model, failure_kind(exc)).inc()
        raise ConfigError("a fleet decision ranks no models")  # unreachable: fleets hold >= 2 models

    async def aclose(self) -> None:
        """Close the upstream clients."""
        for upstream in self.upstreams.values():
            await upstream.aclose()
