"""The HTTP server: an app factory whose routes are thin glue over :class:`RoutingService`.

``create_app(config)`` does no work: routers are loaded (and warmed up) and upstream clients made
in the app's lifespan, and everything lives on ``app.state``, so tests can build many apps. Every
error leaves as OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with its status.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException

from lmroute._version import __version__
from lmroute.exceptions import (
    ConfigError,
    InvalidModelNameError,
    LmrouteError,
    UnknownRouterError,
    UpstreamError,
    UpstreamTimeoutError,
)
from lmroute.routers.base import Router
from lmroute.serving.config import SERVER_KEYS_ENV, ServeConfig
from lmroute.serving.metrics import ServingMetrics
from lmroute.serving.model_name import format_model_name
from lmroute.serving.protocol import (
    ChatCompletionRequest,
    ErrorBody,
    ErrorResponse,
    RequestError,
    RouteRequest,
    RouteResponse,
    parse_body,
    validate,
)
from lmroute.serving.service import Answer, RouteDecision, RouterFailedError, RoutingService, load_routers
from lmroute.serving.streaming import relay
from lmroute.serving.upstreams import ClientFactory

log = logging.getLogger("lmroute.serving")

#: Threshold advertised in /v1/models for a router with no configured thresholds.
_DEFAULT_THRESHOLD = 0.5
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def create_app(
    config: ServeConfig,
    *,
    routers: Mapping[str, Router] | None = None,
    upstream_factory: ClientFactory | None = None,
) -> FastAPI:
    """The lmroute server for ``config``.

    ``routers`` (name -> router) replaces loading ``config.routers``; ``upstream_factory`` makes
    each upstream's ``openai.AsyncOpenAI`` client (default: from its base URL and key variable).
    """
    metrics = ServingMetrics()
    limit = config.server.max_request_bytes
    max_messages = config.server.max_messages
    keys = [key.get_secret_value().encode() for key in config.server.api_keys]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loaded = (
            dict(routers) if routers is not None else await asyncio.to_thread(load_routers, config.routers)
        )
        # The first call of an embedding router loads its model: pay that before the first request.
        await asyncio.to_thread(_warm_up, loaded)
        service = RoutingService.from_config(
            config, routers=loaded, client_factory=upstream_factory, metrics=metrics
        )
        app.state.service = service
        log.info(
            "serving routers %s; strong %s, weak %s",
            ", ".join(loaded),
            config.strong.model,
            config.weak.model,
        )
        try:
            yield
        finally:
            await service.aclose()

    app = FastAPI(title="lmroute", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config = config

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_bodies(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.metrics = metrics

    def authorize(request: Request) -> None:
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

    def check_messages(messages: Sequence[Any]) -> None:
        if len(messages) > max_messages:
            raise RequestError(
                f"messages: {len(messages)} messages is more than this server's limit of {max_messages} "
                "(server.max_messages, --max-messages)",
                param="messages",
                code="too_many_messages",
            )

    def count(endpoint: str, decision: RouteDecision | None, status: int) -> None:
        router = decision.router if decision is not None and decision.router else "none"
        model = decision.model if decision is not None else "none"
        metrics.requests.labels(endpoint, router, model, str(status)).inc()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        service: RoutingService = request.app.state.service
        decision = None
        try:
            authorize(request)
            body = await read_json(request)
            chat: ChatCompletionRequest = validate(ChatCompletionRequest, body)
            check_messages(chat.messages)
            decision = await service.decide(service.target(chat.model), chat.messages)
            if chat.stream:
                stream = await service.open_stream(body, decision)
                count("chat", decision, 200)
                return StreamingResponse(
                    relay(stream),
                    media_type="text/event-stream",
                    headers=_headers(decision, stream.model, stream.fallback, streaming=True),
                )
            answer: Answer = await service.complete(body, decision)
        except LmrouteError as exc:
            response = error_response(exc)
            count("chat", decision, response.status_code)
            return response
        except Exception:
            count("chat", decision, 500)
            raise
        count("chat", decision, 200)
        return JSONResponse(answer.body, headers=_headers(decision, answer.model, answer.fallback))

    @app.post("/v1/route")
    async def route(request: Request) -> Response:
        service: RoutingService = request.app.state.service
        decision = None
        try:
            authorize(request)
            req: RouteRequest = validate(RouteRequest, await read_json(request))
            if (req.messages is None) == (req.prompt is None):
                raise RequestError("give either messages or prompt", param="messages", code="invalid_value")
            check_messages(req.messages or ())
            target = service.target(req.model, router=req.router, threshold=req.threshold)
            if isinstance(target, str):
                raise InvalidModelNameError(
                    f"/v1/route scores with a router: use a model such as router-mf-0.1159, not {req.model!r}"
                )
            decision = await service.decide(
                target, req.messages if req.messages is not None else req.prompt, need_score=True
            )
        except LmrouteError as exc:
            response = error_response(exc)
            count("route", decision, response.status_code)
            return response
        except Exception:
            count("route", decision, 500)
            raise
        count("route", decision, 200)
        answer = RouteResponse(
            router=target.router,
            threshold=target.threshold,
            score=decision.score,
            decision=decision.tier,
            model=decision.model,
        )
        return JSONResponse(answer.model_dump())

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            authorize(request)
        except LmrouteError as exc:
            return error_response(exc)
        service: RoutingService = request.app.state.service
        data = [
            {"id": format_model_name(name, t), "object": "model", "created": 0, "owned_by": "lmroute"}
            for name in sorted(service.routers)
            for t in config.thresholds.get(name, (_DEFAULT_THRESHOLD,))
        ]
        data += [
            {"id": upstream.model, "object": "model", "created": 0, "owned_by": f"upstream:{tier}"}
            for tier, upstream in service.upstreams.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/health")
    async def health(request: Request) -> Response:
        service: RoutingService = request.app.state.service
        return JSONResponse({"status": "ok", "routers": sorted(service.routers)})

    @app.get("/metrics", response_class=PlainTextResponse)  # the schema says text, as it is
    async def prometheus() -> Response:
        text, content_type = metrics.render()
        return Response(text, media_type=content_type)

    @app.exception_handler(LmrouteError)
    async def lmroute_error(request: Request, exc: LmrouteError) -> Response:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        # exc.headers carries the Allow header of a 405 (RFC 9110 requires it).
        return _error(
            exc.status_code, str(exc.detail), kind, code=_HTTP_CODES.get(exc.status_code), headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return _error(500, "internal server error", "server_error", code="internal_error")

    return app


def error_response(exc: LmrouteError) -> Response:
    """The OpenAI-shaped response for a library error."""
    status, kind, code, param = _classify(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 429 and isinstance(exc, UpstreamError) and exc.retry_after is not None:
        headers = {"Retry-After": str(math.ceil(exc.retry_after))}
    return _error(status, str(exc), kind, code=code, param=param, headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _classify(exc: LmrouteError) -> tuple[int, str, str | None, str | None]:
    """(status, type, code, param) of a library error."""
    if isinstance(exc, RequestError):
        return exc.status, "invalid_request_error", exc.code, exc.param
    if isinstance(exc, InvalidModelNameError):
        return 400, "invalid_request_error", "invalid_model", "model"
    if isinstance(exc, UnknownRouterError):
        return 404, "invalid_request_error", "router_not_found", "model"
    if isinstance(exc, RouterFailedError):
        return 503, "server_error", "router_error", None
    if isinstance(exc, UpstreamTimeoutError):
        return 504, "upstream_error", "upstream_timeout", None
    if isinstance(exc, UpstreamError):
        if exc.status_code == 429:
            return 429, "rate_limit_error", "upstream_rate_limited", None
        if exc.status_code in (400, 413, 422):
            return 400, "invalid_request_error", "upstream_rejected_request", None
        return 502, "upstream_error", "upstream_error", None
    if isinstance(exc, ConfigError):
        return 400, "invalid_request_error", "invalid_value", None
    return 500, "server_error", "internal_error", None


def _error(
    status: int,
    message: str,
    kind: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _too_large(limit: int) -> RequestError:
    return RequestError(
        f"the request body is larger than this server's limit of {limit} bytes "
        "(server.max_request_bytes, --max-request-bytes)",
        status=413,
        code="request_too_large",
    )


def _headers(
    decision: RouteDecision, model: str, fallback: bool, *, streaming: bool = False
) -> dict[str, str]:
    headers = {"x-lmroute-model": model, "x-lmroute-decision": decision.tier}
    if decision.router is not None:
        headers["x-lmroute-router"] = decision.router
    if decision.score is not None:
        headers["x-lmroute-score"] = f"{decision.score:.6f}"
    if fallback:
        headers["x-lmroute-fallback"] = "true"
    if streaming:
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"  # nginx would otherwise hold the events back
    return headers


#: Request bodies by path: the routes read them raw (size limit, OpenAI-shaped errors), so FastAPI
#: cannot see them; the OpenAPI schema describes them from the same models.
_BODIES = {"/v1/chat/completions": ChatCompletionRequest, "/v1/route": RouteRequest}
_ERROR_STATUSES = (400, 401, 404, 413, 429, 502, 503, 504)


def _document_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the request bodies and the OpenAI-shaped error responses of the POST routes."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (*_BODIES.values(), ErrorResponse):
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    error = {
        "description": "OpenAI-shaped error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for path, model in _BODIES.items():
        operation = schema["paths"][path]["post"]
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
        operation["responses"].update({str(status): error for status in _ERROR_STATUSES})
    return schema


def _warm_up(routers: Mapping[str, Router]) -> None:
    for router in routers.values():
        router.score(["warm-up"])


def serve(config: ServeConfig, *, routers: Mapping[str, Router] | None = None) -> None:
    """Run the server with uvicorn until interrupted; in-flight requests get time to finish.

    Routers are loaded and the API-key variables checked before uvicorn starts, so that a bad
    config is one clear error rather than a failed application start-up.
    """
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    config.strong.api_key()
    config.weak.api_key()
    if routers is None:
        routers = load_routers(config.routers)
    if config.server.host not in _LOOPBACK and not config.server.api_keys:
        log.warning(
            "serving on %s without API keys: anyone who can reach this port can spend your upstream "
            "credits (set --api-key or %s)",
            config.server.host,
            SERVER_KEYS_ENV,
        )
    level = config.server.log_level
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["lmroute"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    uvicorn.run(
        create_app(config, routers=routers),
        host=config.server.host,
        port=config.server.port,
        log_level=level,
        log_config=log_config,
        access_log=level in ("info", "debug"),
        timeout_graceful_shutdown=config.server.graceful_shutdown,
    )
