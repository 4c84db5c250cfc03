"""Routing and upstream calls, shared by the server and the controller; no HTTP framework here.

A request goes through three steps, each usable alone::

    target = service.target("router-mf-0.52")        # parse: RouterSpec, or an upstream tier
    decision = await service.decide(target, messages)    # score (micro-batched, thread pool)
    answer = await service.complete(payload, decision)   # call the model, falling back if it fails

``open_stream`` replaces ``complete`` for streams. The answer is the upstream's JSON with one more
key, ``lmroute``: router, threshold, score, decision, the model that answered, and whether that was
a fallback (a stream carries it in its first chunk); under a target mode also the target, and in a
conversation what it did.

Every scored decision goes through the service's :class:`~lmroute.control.hub.ControlHub` (the
threshold of a target mode, drift, conversations); its state is saved every ``save_every``
decisions in a worker thread and at :meth:`RoutingService.aclose`.
With N priced models (``models:``) it serves the ``lambda`` and ``quality`` modes too: their
decisions are :class:`~lmroute.serving.fleet.FleetDecision`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from lmroute.control.hub import ControlHub
from lmroute.control.taps import EmbeddingSummaries
from lmroute.data.conversations import DEFAULT_ROUTE_ON
from lmroute.data.conversations import routing_text as conversation_text
from lmroute.exceptions import (
    ConfigError,
    InvalidModelNameError,
    RouterFailedError,
    UnknownRouterError,
    UpstreamError,
)
from lmroute.pricing import Price
from lmroute.routers.base import Router, check_threshold
from lmroute.routing_names import (
    EXAMPLE,
    FLEET_MODES,
    PREFIX,
    RouterSpec,
    parse_model_name,
    unknown_mode_hint,
)
from lmroute.serving.answers import Answer, Decision, RouteDecision, RoutedStream, Tier
from lmroute.serving.batcher import MicroBatcher
from lmroute.serving.config import OnRouterError, RouteOn, ServeConfig
from lmroute.serving.control import StateSaver, conversation_keys, request_tokens
from lmroute.serving.fleet import Fleet, FleetDecision, FleetModel, SpendCounters, check_vocabulary
from lmroute.serving.metrics import ServingMetrics
from lmroute.serving.protocol import ChatMessage
from lmroute.upstream import (
    CircuitBreaker,
    ClientFactory,
    Upstream,
    failure_kind,
    make_client,
    should_fall_back,
)

log = logging.getLogger("lmroute.serving")

_OTHER: dict[Tier, Tier] = {"strong": "weak", "weak": "strong"}
_T = TypeVar("_T")


def routing_text(messages: Sequence[ChatMessage], route_on: RouteOn) -> str:
    """The text a router scores of a request's messages (:func:`lmroute.data.conversations.routing_text`)."""
    return conversation_text([(m.role, m.text()) for m in messages], route_on)


def _label(upstream: Upstream) -> str:
    """An upstream's name in the per-model counters: its serving name if it is one of N models."""
    return upstream.config.name if isinstance(upstream.config, FleetModel) else upstream.model


class RoutingService:
    """Routers (one micro-batcher each) and the strong and weak upstreams."""

    def __init__(
        self,
        *,
        routers: Mapping[str, Router],
        strong: Upstream,
        weak: Upstream,
        fallback: bool = True,
        route_on: RouteOn = DEFAULT_ROUTE_ON,
        on_router_error: OnRouterError = "strong",
        batch_size: int = 64,
        batch_wait: float = 0.0,
        scoring_threads: int = 1,
        executor: Executor | None = None,
        metrics: ServingMetrics | None = None,
        fleet: Fleet | None = None,
        control: ControlHub | None = None,
        summaries: EmbeddingSummaries | None = None,
    ):
        if not routers:
            raise ConfigError("no routers to serve")
        self.routers = dict(routers)
        #: The N priced models of ``models:``, or None (two-model routing only).
        self.fleet = fleet
        if fleet is not None:
            check_vocabulary(fleet.models, self.routers)
        priced = fleet is not None or any(u.config.price is not None for u in (strong, weak))
        self._spend = SpendCounters(metrics.registry, priced=priced) if metrics is not None else None
        #: Target modes, drift and conversations; its prices are the upstreams' by default.
        self.control = control or ControlHub(
            prices={"strong": strong.config.price, "weak": weak.config.price}
        )
        self.summaries = summaries
        self._saver = StateSaver(self.control)
        self.upstreams: dict[Tier, Upstream] = {"strong": strong, "weak": weak}
        self.fallback = fallback
        self.route_on = route_on
        self.on_router_error = on_router_error
        self.metrics = metrics
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(scoring_threads, thread_name_prefix="lmroute-score")
        self._batchers = {
            name: MicroBatcher(
                router,
                executor=self._executor,
                max_batch=batch_size,
                max_wait=batch_wait,
                on_batch=metrics.batch_size.labels(name).observe if metrics is not None else None,
            )
            for name, router in self.routers.items()
        }

    @classmethod
    def from_config(
        cls,
        config: ServeConfig,
        *,
        routers: Mapping[str, Router],
        client_factory: ClientFactory | None = None,
        metrics: ServingMetrics | None = None,
        summaries: EmbeddingSummaries | None = None,
    ) -> RoutingService:
        """A service for ``config`` whose upstream clients come from ``client_factory``.

        Its control hub is neither restored nor calibrated yet
        (:func:`~lmroute.serving.control.prepare_control` does both)."""
        factory = client_factory or make_client
        fleet = None
        if config.models:
            fleet = Fleet.from_models(
                config.models,
                factory,
                metrics=metrics,
                fallback=config.fallback,
                circuit_breaker=config.circuit_breaker,
            )
        return cls(
            routers=routers,
            strong=Upstream(
                config.strong,
                factory(config.strong),
                observer=metrics,
                breaker=CircuitBreaker(config.circuit_breaker),
            ),
            weak=Upstream(
                config.weak,
                factory(config.weak),
                observer=metrics,
                breaker=CircuitBreaker(config.circuit_breaker),
            ),
            fallback=config.fallback,
            route_on=config.route_on,
            on_router_error=config.on_router_error,
            batch_size=config.batch_size,
            batch_wait=config.batch_wait_ms / 1000,
            scoring_threads=config.scoring_threads,
            metrics=metrics,
            fleet=fleet,
            control=ControlHub(
                config.control, prices={"strong": config.strong.price, "weak": config.weak.price}
            ),
            summaries=summaries,
        )

    # -- step 1: what the request asks for --------------------------------------------------
    def target(
        self, model: str | None = None, *, router: str | None = None, threshold: float | None = None
    ) -> RouterSpec | Tier | FleetDecision:
        """A router and threshold (or mode), or an upstream model asked for by name: its tier, or
        among N models the decision for it."""
        if router is not None or threshold is not None:
            if model is not None:
                raise ConfigError("give either model= or router= with threshold=, not both")
            if router is None or threshold is None:
                raise ConfigError("router= and threshold= go together")
            spec = RouterSpec(router, check_threshold(threshold))
        elif model is None:
            raise InvalidModelNameError(f"no model given: use a model such as {EXAMPLE!r}")
        elif not isinstance(model, str):  # the Controller's model= is not validated as a body is
            raise InvalidModelNameError(f"model must be a string such as {EXAMPLE!r}, got {model!r}")
        else:
            for tier, upstream in self.upstreams.items():
                if model == upstream.model:
                    return tier
            if self.fleet is not None and (named := self.fleet.named(model)) is not None:
                return named
            if not model.startswith(PREFIX):
                known = [upstream.model for upstream in self.upstreams.values()]
                if self.fleet is not None:
                    known += self.fleet.catalogue.names
                names = ", ".join(dict.fromkeys(known))
                raise InvalidModelNameError(
                    f"model {model!r} is neither router-<router>-<threshold> (e.g. {EXAMPLE!r}) nor one "
                    f"of the upstream models ({names})"
                )
            spec = parse_model_name(model)
        if spec.router not in self._batchers:
            # Only a model string reads "<router>-<word>" as a mode; router= names a router alone.
            hint = unknown_mode_hint(spec.router) if model is not None else None
            if hint and spec.router.rpartition("-")[0] in self._batchers:
                raise InvalidModelNameError(f"model {model!r}: {hint}")
            raise UnknownRouterError(
                f"router {spec.router!r} is not served here; available: {', '.join(sorted(self.routers))}"
            )
        if spec.mode in FLEET_MODES:
            if self.fleet is None:
                raise InvalidModelNameError(
                    f"model {spec.model!r}: mode {spec.mode!r} routes among N priced models, and this "
                    "server's config lists none (models:); use router-<router>-<threshold>"
                )
            self.fleet.check_router(spec.router, self.routers[spec.router])
        else:
            self.control.check(spec)
        return spec

    def router_target(
        self,
        model: str | None = None,
        *,
        router: str | None = None,
        threshold: float | None = None,
        where: str,
    ) -> RouterSpec:
        """:meth:`target` for a decision that must have a score (``where``: ``/v1/route``,
        ``route()``): an upstream model asked for by name is refused, as nothing scores it."""
        target = self.target(model, router=router, threshold=threshold)
        if isinstance(target, (str, FleetDecision)):
            raise InvalidModelNameError(
                f"{where} scores with a router: use a model such as {EXAMPLE}, not {model!r}"
            )
        return target

    # -- step 2: the decision ---------------------------------------------------------------
    async def score(self, router: str, prompt: str) -> float:
        """One prompt's score, batched with concurrent requests to the same router."""
        return await self._batchers[router].score(prompt)

    async def decide(
        self,
        target: RouterSpec | Tier | FleetDecision,
        messages: Sequence[ChatMessage] | str,
        *,
        need_score: bool = False,
        conversation: tuple[str, str] | None = None,
        tenant: str | None = None,
    ) -> Decision:
        """Score the routing text of ``messages`` (or a prompt) and pick the strong or weak model (or,
        under a ``lambda`` or ``quality`` mode, one of N models: the fleet decides).

        ``conversation`` is an explicit conversation id and where it came from (``("abc",
        "header")``); without one, a conversation is known by its earlier turns. ``tenant`` names
        the API key's controllers when ``per_api_key`` is set. When the router raises, the request
        goes to the model ``on_router_error`` names (score None), or RouterFailedError when that is
        ``"error"`` or ``need_score`` is set.
        """
        if isinstance(target, FleetDecision):
            return target
        if isinstance(target, str):
            return RouteDecision(tier=target, model=self.upstreams[target].model)
        prompt = messages if isinstance(messages, str) else routing_text(messages, self.route_on)
        start = time.perf_counter()
        if target.mode in FLEET_MODES:
            assert self.fleet is not None  # target() returns a mode only when there is a fleet
            on_failure = None if need_score or self.on_router_error == "error" else self.on_router_error
            router = self.routers[target.router]
            # priced on every message, as the model reads (and bills) them all, not the routing text
            return await self.fleet.decide_async(
                target, router, prompt, request_tokens(messages), self._executor, on_failure=on_failure
            )
        try:
            score = await self.score(target.router, prompt)
        except Exception as exc:  # a broken router or embedding backend must not take the requests down
            if self.metrics is not None:
                self.metrics.router_errors.labels(target.router).inc()
            log.warning(
                "router %s failed: %s: %s",
                target.router,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            if need_score or self.on_router_error == "error":
                raise RouterFailedError(
                    f"router {target.router!r} failed to score the prompt ({type(exc).__name__}); "
                    "see the server log"
                ) from exc
            tier: Tier = self.on_router_error
            return RouteDecision(tier, self.upstreams[tier].model, target.router, target.threshold, None)
        if self.metrics is not None:
            self.metrics.routing_latency.labels(target.router).observe(time.perf_counter() - start)
        embedder = self.routers[target.router].embedder_name
        summary = self.summaries.take(embedder, prompt) if self.summaries is not None else None
        keys = (
            conversation_keys(messages, conversation, tenant)
            if self.control.conversations is not None
            else None
        )
        decided = self.control.decide(
            target, score, tokens=request_tokens(messages), summary=summary, conversation=keys, tenant=tenant
        )
        self._saver.save_if_due()
        tier = decided.tier
        return RouteDecision(
            tier,
            self.upstreams[tier].model,
            target.router,
            decided.threshold,
            score,
            decided.target,
            decided.conversation,
        )

    # -- step 3: the call -------------------------------------------------------------------
    async def complete(self, payload: dict[str, Any], decision: Decision) -> Answer:
        """The completion from the decided model (when it fails and fallback is on: the next one)."""
        if isinstance(decision, FleetDecision):
            assert self.fleet is not None  # only a fleet makes FleetDecisions
            name, fallback, body = await self.fleet.call(decision, lambda up: up.complete(payload))
            body["lmroute"] = decision.info(answered_by=name, fallback=fallback)
            self._count(name, payload, body)
            return Answer(body, decision, name, fallback)
        upstream, fallback, body = await self._call(decision, lambda up: up.complete(payload))
        body["lmroute"] = decision.info(answered_by=upstream.model, fallback=fallback)
        self._count(_label(upstream), payload, body, upstream.config.price)
        return Answer(body, decision, upstream.model, fallback)

    async def open_stream(self, payload: dict[str, Any], decision: Decision) -> RoutedStream:
        """An accepted stream; fallback happens only before the first byte, never mid-stream."""
        if isinstance(decision, FleetDecision):
            assert self.fleet is not None
            name, fallback, stream = await self.fleet.call(decision, lambda up: up.open_stream(payload))
            self._count(name, payload, None)
            return RoutedStream(stream, decision, fallback=fallback, model=name)
        upstream, fallback, stream = await self._call(decision, lambda up: up.open_stream(payload))
        self._count(_label(upstream), payload, None, upstream.config.price)
        return RoutedStream(stream, decision, fallback=fallback)

    def _count(
        self, model: str, payload: dict[str, Any], body: dict[str, Any] | None, price: Price | None = None
    ) -> None:
        """Count an answer and its estimated spend (prices: the upstream's, else the fleet's)."""
        if self._spend is not None:
            if price is None and self.fleet is not None:
                price = self.fleet.price(model)
            self._spend.count(model, price, payload, body)

    async def _call(
        self, decision: RouteDecision, call: Callable[[Upstream], Awaitable[_T]]
    ) -> tuple[Upstream, bool, _T]:
        first = self.upstreams[decision.tier]
        try:
            return first, False, await call(first)
        except UpstreamError as exc:
            # A model asked for by name is not rerouted: the client chose it.
            if not (self.fallback and decision.router is not None and should_fall_back(exc)):
                raise
            other = self.upstreams[_OTHER[decision.tier]]
            reason = failure_kind(exc)
            log.warning("model %s failed (%s); falling back to %s", first.model, exc, other.model)
            if self.metrics is not None:
                self.metrics.fallbacks.labels(first.model, other.model, reason).inc()
            try:
                return other, True, await call(other)
            except UpstreamError as second:
                too = f"fallback to model {other.model} failed too"
                raise second.restated(
                    f"{exc}; {too}: {second}",
                    public=f"{exc.client_message}; {too}: {second.client_message}",
                ) from second

    async def aclose(self) -> None:
        """Save the control state, close the upstream clients and the scoring threads."""
        await self._saver.final_save()
        for upstream in self.upstreams.values():
            await upstream.aclose()
        if self.fleet is not None:
            await self.fleet.aclose()
        if self._own_executor:
            self._executor.shutdown(wait=False)
