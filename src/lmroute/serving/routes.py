"""The HTTP routes: thin glue between requests and :class:`~lmroute.serving.service.RoutingService`.

``ROUTES`` are plain Starlette routes; ``create_app`` serves them. Routes find what they need on
``request.app.state`` (``service``, ``config``, ``api_keys``), check the API key with
:func:`authorize`, read bodies themselves with :func:`read_json` (size limit, OpenAI-shaped errors)
and raise lmroute's errors, which the app's exception handlers turn into OpenAI-shaped responses
(:mod:`lmroute.serving.errors`). Each routing decision is left in ``request.state.decision`` for
the request count (:mod:`lmroute.serving.middleware`).

A conversation is named by the ``x-lmroute-conversation`` header or else the request's ``user``
field (:data:`CONVERSATION_HEADER`); ``GET /v1/status`` shows the control hub: thresholds of the
target modes, realized shares, drift, conversations.
"""

from __future__ import annotations

import asyncio
import hmac
import string
import time
from collections.abc import Awaitable, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lmroute.exceptions import LmrouteError, RequestError
from lmroute.routing_names import RouterSpec, format_model_name
from lmroute.serving.answers import Answer, Decision, RoutedStream, Tier
from lmroute.serving.control import api_key_tenant
from lmroute.serving.errors import CLIENT_CLOSED, trailing_slash
from lmroute.serving.fleet import FleetDecision
from lmroute.serving.protocol import (
    ChatCompletionRequest,
    ChatMessage,
    RouteRequest,
    RouteResponse,
    parse_body,
    validate,
)
from lmroute.serving.service import RoutingService
from lmroute.serving.streaming import EventStream, json_bytes, relay

CHAT_PATH = "/v1/chat/completions"
ROUTE_PATH = "/v1/route"
STATUS_PATH = "/v1/status"
MODELS_PATH = "/v1/models"
#: The header that names a request's conversation (it takes precedence over the ``user`` field).
CONVERSATION_HEADER = "x-lmroute-conversation"
#: The endpoints counted in ``lmroute_requests``, by path.
COUNTED_ENDPOINTS = {CHAT_PATH: "chat", ROUTE_PATH: "route"}
#: Threshold advertised in /v1/models for a router with no configured thresholds.
_DEFAULT_THRESHOLD = 0.5
#: What names keep as is in headers: printable ASCII but "%" (which encodes the rest) and space.
_HEADER_SAFE = string.punctuation.replace("%", "")


async def authorize(request: Request) -> None:
    """Refuse (401) a request without one of the server's API keys, when it has any."""
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # Compare with every key, in constant time, so timing reveals neither a key nor which one matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token.strip().encode(), key)
    if scheme.lower() != "bearer" or not matched:
        raise RequestError(
            "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
            status=401,
            code="invalid_api_key",
        )


async def read_json(request: Request) -> dict[str, Any]:
    """The body's JSON object, read up to the server's size limit (413 beyond it)."""
    limit: int = request.app.state.config.server.max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        body.append(chunk)
    return parse_body(b"".join(body))


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``: route the request and answer with the chosen model's completion."""
    await authorize(request)
    body = await read_json(request)
    service: RoutingService = request.app.state.service
    chat: ChatCompletionRequest = validate(ChatCompletionRequest, body)
    _check_messages(request, chat.messages)
    target = service.target(chat.model)
    routed = await _unless_client_leaves(request, _route_and_call(request, service, target, chat, body))
    if routed is None:
        return Response(status_code=CLIENT_CLOSED)
    answer, decision = routed.answer, routed.decision
    request.state.answered_by = answer.model
    if isinstance(answer, RoutedStream):
        return EventStream(
            relay(answer),
            heartbeat=request.app.state.config.server.stream_heartbeat,
            headers=_headers(decision, answer.model, answer.fallback, streaming=True) | routed.timing,
        )
    return _Answer(answer.body, headers=_headers(decision, answer.model, answer.fallback) | routed.timing)


class _Routed(NamedTuple):
    decision: Decision
    #: The completion, or the stream opened at its first event.
    answer: Answer | RoutedStream
    #: The Server-Timing header of the routing decision.
    timing: dict[str, str]


async def _route_and_call(
    request: Request,
    service: RoutingService,
    target: RouterSpec | Tier | FleetDecision,
    chat: ChatCompletionRequest,
    body: dict[str, Any],
) -> _Routed:
    start = time.perf_counter()
    decision = await service.decide(
        target, chat.messages, conversation=_conversation(request, body), tenant=_tenant(request)
    )
    timing = _server_timing(start)
    request.state.decision = decision
    if chat.stream:
        return _Routed(decision, await service.open_stream(body, decision), timing)
    return _Routed(decision, await service.complete(body, decision), timing)


async def _unless_client_leaves(request: Request, routing: Awaitable[_Routed]) -> _Routed | None:
    """What ``routing`` returns, or None when the client left first: it is then cancelled, which
    drops the prompt from the scoring queue (under load), or ends the upstream call, its retries
    and fallback and closes its connection. A long answer (or a stream whose first event a
    slow-to-start model sends late) must not run (and bill) for nobody."""
    routed = asyncio.ensure_future(routing)
    left = asyncio.ensure_future(_client_left(request))
    try:
        await asyncio.wait((routed, left), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        routed.cancel()
        raise
    finally:
        left.cancel()
    if routed.done():  # also when the client left at that moment: the response then notices it
        return routed.result()
    routed.cancel()
    await asyncio.wait((routed,))
    if not routed.cancelled() and routed.exception() is None:  # it finished as the client left
        answer = routed.result().answer
        if isinstance(answer, RoutedStream):
            await answer.aclose()
    return None


async def _client_left(request: Request) -> None:
    # The body has been read (read_json): what the server receives next can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


class _Answer(JSONResponse):
    """An upstream's answer as :func:`json_bytes` writes it: Starlette's JSONResponse refuses a
    lone surrogate or NaN that the upstream sent (a 500 for the client)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


async def route(request: Request) -> Response:
    """``POST /v1/route``: the routing decision alone, with no model call."""
    await authorize(request)
    body = await read_json(request)
    service: RoutingService = request.app.state.service
    req: RouteRequest = validate(RouteRequest, body)
    text: Sequence[ChatMessage] | str
    if req.messages is not None and req.prompt is None:
        text = req.messages
    elif req.prompt is not None and req.messages is None:
        text = req.prompt
    else:
        raise RequestError("give either messages or prompt", param="messages", code="invalid_value")
    _check_messages(request, req.messages or ())
    target = service.router_target(req.model, router=req.router, threshold=req.threshold, where="/v1/route")
    decision = await service.decide(
        target, text, need_score=True, conversation=_conversation(request, body), tenant=_tenant(request)
    )
    request.state.decision = decision
    if isinstance(decision, FleetDecision):  # among N models: the lmroute object, without a call
        return JSONResponse(decision.info(answered_by=None, fallback=False))
    assert decision.score is not None  # need_score: a router that fails raises RouterFailedError
    assert decision.threshold is not None  # a scored decision always has one
    answer = RouteResponse(
        router=target.router,
        threshold=decision.threshold,
        score=decision.score,
        decision=decision.tier,
        model=decision.model,
        target=decision.target,
        conversation=decision.conversation,
    )
    return JSONResponse(answer.model_dump())


async def models(request: Request) -> Response:
    """``GET /v1/models``: every router-threshold model string and upstream model this server serves."""
    await authorize(request)
    return JSONResponse({"object": "list", "data": _listed(request)})


async def model_by_id(request: Request) -> Response:
    """``GET /v1/models/{id}``: the object ``GET /v1/models`` lists for ``id``; a model string the
    server accepts but does not list (another threshold, a target mode) gets one of the same shape."""
    if (wrong := trailing_slash(request)) is not None:  # /v1/models/ is the list's path, not an id
        raise wrong
    await authorize(request)
    name: str = request.path_params["model"]
    for listed in _listed(request):
        if listed["id"] == name:
            return JSONResponse(listed)
    service: RoutingService = request.app.state.service
    try:
        target = service.target(name)
    except LmrouteError as exc:
        raise RequestError(
            f"the model {name!r} is not served here ({exc})",
            status=404,
            param="model",
            code="model_not_found",
        ) from None
    if isinstance(target, RouterSpec):
        return JSONResponse(_model_object(name, "lmroute"))
    owner = "upstream:models" if isinstance(target, FleetDecision) else f"upstream:{target}"
    return JSONResponse(_model_object(name, owner))


def _listed(request: Request) -> list[dict[str, Any]]:
    service: RoutingService = request.app.state.service
    thresholds = request.app.state.config.thresholds
    data = [
        _model_object(format_model_name(name, t), "lmroute")
        for name in sorted(service.routers)
        for t in thresholds.get(name, (_DEFAULT_THRESHOLD,))
    ]
    data += [
        _model_object(upstream.model, f"upstream:{tier}") for tier, upstream in service.upstreams.items()
    ]
    if service.fleet is not None:
        # A model without a name: is served under its upstream id, which the strong or weak tier
        # (the dearest or cheapest of them) already lists; a request for it goes to that tier.
        listed = {m["id"] for m in data}
        data += [
            _model_object(name, "upstream:models")
            for name in service.fleet.catalogue.names
            if name not in listed
        ]
    return data


def _model_object(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


async def status(request: Request) -> Response:
    """``GET /v1/status``: online control: each target's threshold and realized share or spend,
    drift per router, conversations, and the state file."""
    await authorize(request)
    service: RoutingService = request.app.state.service
    return JSONResponse(
        {"object": "lmroute.status", "routers": sorted(service.routers), **service.control.status()}
    )


async def health(request: Request) -> Response:
    """``GET /health``: the routers this server has loaded."""
    service: RoutingService = request.app.state.service
    return JSONResponse({"status": "ok", "routers": sorted(service.routers)})


async def prometheus(request: Request) -> Response:
    """``GET /metrics``: the Prometheus metrics."""
    text, content_type = request.app.state.metrics.render()
    return Response(text, media_type=content_type)


ROUTES = [
    Route(CHAT_PATH, chat_completions, methods=["POST"]),
    Route(ROUTE_PATH, route, methods=["POST"]),
    Route(MODELS_PATH, models, methods=["GET"]),
    # ":path": model ids hold "/" (upstream ids such as org/model; the OpenAI SDK sends it as %2F).
    Route(MODELS_PATH + "/{model:path}", model_by_id, methods=["GET"]),
    Route(STATUS_PATH, status, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/metrics", prometheus, methods=["GET"]),
]


def _conversation(request: Request, body: dict[str, Any]) -> tuple[str, str] | None:
    """The request's explicit conversation id and where it came from, if it has one."""
    header = request.headers.get(CONVERSATION_HEADER, "").strip()
    if header:
        return header, "header"
    user = body.get("user")
    if isinstance(user, str) and user.strip():
        return user.strip(), "user"
    return None


def _tenant(request: Request) -> str | None:
    """With ``per_api_key``, a digest of the request's API key: it names the key's controllers
    without keeping the key itself in memory, the state file or the metrics."""
    if not request.app.state.config.control.per_api_key or not request.app.state.api_keys:
        return None
    return api_key_tenant(request.headers.get("authorization", "").partition(" ")[2].strip())


def _check_messages(request: Request, messages: Sequence[Any]) -> None:
    limit: int = request.app.state.config.server.max_messages
    if len(messages) > limit:
        raise RequestError(
            f"messages: {len(messages)} messages is more than this server's limit of {limit} "
            "(server.max_messages, --max-messages)",
            param="messages",
            code="too_many_messages",
        )


def _server_timing(start: float) -> dict[str, str]:
    """The time to the routing decision as a Server-Timing header (the console shows it)."""
    return {"server-timing": f"routing;dur={1000 * (time.perf_counter() - start):.3f}"}


def _header_text(name: str) -> str:
    """A model or router name as a header value: percent-encoded beyond printable ASCII. A header
    holds no "千问" (Starlette raised: a 500 once the model had answered, and billed)."""
    return quote(name, safe=_HEADER_SAFE)


def _too_large(limit: int) -> RequestError:
    return RequestError(
        f"the request body is larger than this server's limit of {limit} bytes "
        "(server.max_request_bytes, --max-request-bytes)",
        status=413,
        code="request_too_large",
    )


def _headers(decision: Decision, model: str, fallback: bool, *, streaming: bool = False) -> dict[str, str]:
    headers = {"x-lmroute-model": _header_text(model), "x-lmroute-decision": _header_text(decision.tier)}
    if decision.router is not None:
        headers["x-lmroute-router"] = _header_text(decision.router)
    if decision.score is not None:
        headers["x-lmroute-score"] = f"{decision.score:.6f}"
    if decision.threshold is not None:
        headers["x-lmroute-threshold"] = f"{decision.threshold:.6f}"
    if fallback:
        headers["x-lmroute-fallback"] = "true"
    if streaming:
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"  # nginx would otherwise hold the events back
    return headers
