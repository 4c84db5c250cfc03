"""The HTTP server: ``create_app``, the factory of an app whose routes are :mod:`~lmroute.serving.routes`.

``create_app(config)`` does no work: routers are loaded (and warmed up) and upstream clients made
in the app's lifespan, and everything lives on ``app.state``, so tests can build many apps. Every
error leaves as OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with its status
(:mod:`~lmroute.serving.errors`), and every routing request is counted (:mod:`~lmroute.serving.middleware`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from lmroute._version import __version__
from lmroute.control.taps import EmbeddingSummaries
from lmroute.exceptions import ConfigError
from lmroute.routers.base import Router
from lmroute.serving import console, routes
from lmroute.serving.config import SERVER_KEYS_ENV, ServeConfig
from lmroute.serving.control import prepare_control
from lmroute.serving.errors import exception_handlers
from lmroute.serving.fleet import check_vocabulary
from lmroute.serving.loading import load_routers
from lmroute.serving.metrics import ServingMetrics
from lmroute.serving.middleware import RequestCounter
from lmroute.serving.protocol import ChatCompletionRequest, ErrorResponse, RouteRequest
from lmroute.serving.service import RoutingService
from lmroute.upstream import ClientFactory

log = logging.getLogger("lmroute.serving")

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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        summaries = EmbeddingSummaries()
        loaded = (
            dict(routers)
            if routers is not None
            else await asyncio.to_thread(load_routers, config.routers, summaries=summaries)
        )
        # The first call of an embedding router loads its model: pay that before the first request.
        await asyncio.to_thread(_warm_up, loaded)
        service = RoutingService.from_config(
            config, routers=loaded, client_factory=upstream_factory, metrics=metrics, summaries=summaries
        )
        await asyncio.to_thread(prepare_control, service.control, service.routers, summaries)
        metrics.watch_control(service.control.status)
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

    app = FastAPI(
        title="lmroute",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        exception_handlers=exception_handlers(),
    )
    app.state.config = config
    app.state.metrics = metrics
    app.state.api_keys = [key.get_secret_value().encode() for key in config.server.api_keys]
    app.add_middleware(RequestCounter, metrics=metrics, endpoints=routes.COUNTED_ENDPOINTS)
    app.include_router(routes.router)
    if config.server.ui:
        app.include_router(console.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_bodies(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to amend the schema
    return app


#: Request bodies by path: the routes read them raw (size limit, OpenAI-shaped errors), so FastAPI
#: cannot see them; the OpenAPI schema describes them from the same models.
_BODIES: dict[str, type[BaseModel]] = {
    routes.CHAT_PATH: ChatCompletionRequest,
    routes.ROUTE_PATH: RouteRequest,
}
_ERROR_STATUSES = (400, 401, 404, 413, 429, 502, 503, 504)


def _document_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the request bodies and the OpenAI-shaped error responses of the POST routes."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    documented: list[type[BaseModel]] = [*_BODIES.values(), ErrorResponse]
    for model in documented:
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


def serve(
    config: ServeConfig, *, routers: Mapping[str, Router] | None = None, data_dir: str | Path | None = None
) -> None:
    """Run the server with uvicorn until interrupted; in-flight requests get time to finish.

    Routers are loaded, the API-key variables and the port checked before uvicorn starts, so that a
    bad config is one clear error rather than a failed application start-up; a configured threshold
    that routes (nearly) everything one way is a warning (:mod:`lmroute.serving.thresholds`, whose
    public sample is looked up in ``data_dir`` and by the rest of lmroute's data rule).
    """
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    for upstream in (config.strong, config.weak, *config.models):
        upstream.api_key()
    if routers is None:
        routers = load_routers(config.routers)
    check_vocabulary(config.models, routers)
    from lmroute.serving.thresholds import threshold_warnings

    for warning in threshold_warnings(config, routers, data_dir=data_dir):
        log.warning("%s", warning)
    if config.server.host not in _LOOPBACK and not config.server.api_keys:
        log.warning(
            "serving on %s without API keys: anyone who can reach this port can spend your upstream "
            "credits (set --api-key or %s)",
            config.server.host,
            SERVER_KEYS_ENV,
        )
    _check_port(config.server.host, config.server.port)
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
        # Annotated int, but uvicorn waits with asyncio.timeout(), which takes fractions of a second.
        timeout_graceful_shutdown=config.server.graceful_shutdown,  # type: ignore[arg-type]
    )


def _check_port(host: str, port: int) -> None:
    """ConfigError when ``host:port`` cannot be bound (uvicorn would print several lines and exit 3)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT is free, one listened on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server on it? choose "
                "another with `lmroute serve --port`)"
            ) from None
